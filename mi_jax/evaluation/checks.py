"""Input checks and feature scaling shared by the probes and kNN."""
import numpy as np

SCALINGS = ("minmax", "standard", "none")


def check_features(train_feats_NxD, train_labels_N, test_feats_MxD,
                   test_labels_M):
  """Validates probe inputs; returns them as (f32, i32, f32, i32) NumPy arrays.

  Raises ValueError for: non-2-D features, mismatched lengths or feature
  dims, NaN / inf features, negative labels, fewer than two train classes.
  """
  train_NxD = np.asarray(train_feats_NxD, np.float32)
  test_MxD = np.asarray(test_feats_MxD, np.float32)
  train_N = np.asarray(train_labels_N).reshape(-1)
  test_M = np.asarray(test_labels_M).reshape(-1)
  for name, feats in (("train", train_NxD), ("test", test_MxD)):
    if feats.ndim != 2:
      raise ValueError(f"{name} features must be 2-D [N, D], got shape "
                       f"{feats.shape}.")
    bad = int(feats.size - np.isfinite(feats).sum())
    if bad:
      raise ValueError(f"{name} features hold {bad} NaN or inf values.")
  if len(train_NxD) != len(train_N):
    raise ValueError(f"{len(train_NxD)} train features but {len(train_N)} "
                     "train labels.")
  if len(test_MxD) != len(test_M):
    raise ValueError(f"{len(test_MxD)} test features but {len(test_M)} "
                     "test labels.")
  if train_NxD.shape[1] != test_MxD.shape[1]:
    raise ValueError(f"train features have dim {train_NxD.shape[1]}, test "
                     f"features {test_MxD.shape[1]}.")
  if len(test_M) == 0:
    raise ValueError("No test examples.")
  for name, labels in (("train", train_N), ("test", test_M)):
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
      raise ValueError(f"{name} labels must be non-negative integers.")
  if len(np.unique(train_N)) < 2:
    raise ValueError(
        f"The train labels hold a single class ({np.unique(train_N)}); a "
        "classifier needs at least two.")
  return (train_NxD, train_N.astype(np.int32), test_MxD,
          test_M.astype(np.int32))


def fit_scaler(train_NxD, scaling):
  """(shift_D, scale_D) so that `(x - shift) / scale` scales like the train set.

  "minmax": to [0, 1] per feature, as sklearn's MinMaxScaler (used by
  Tschannen et al. 2020); "standard": zero mean, unit variance, as
  StandardScaler; "none": identity. Constant features get scale 1.
  """
  if scaling not in SCALINGS:
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}.")
  d = train_NxD.shape[1]
  if scaling == "none":
    return np.zeros(d, np.float32), np.ones(d, np.float32)
  if scaling == "minmax":
    shift = train_NxD.min(axis=0)
    scale = train_NxD.max(axis=0) - shift
  else:
    shift = train_NxD.mean(axis=0, dtype=np.float64)
    scale = train_NxD.std(axis=0, dtype=np.float64)
  scale = np.where(scale > 0, scale, 1.0)
  return shift.astype(np.float32), scale.astype(np.float32)
