"""Input checks shared by the estimators: clear ValueErrors for bad samples."""

import numpy as np


def _as_matrix(a, name: str) -> np.ndarray:
  try:
    a = np.asarray(a)
  except Exception as e:  # ragged lists and the like
    raise ValueError(f"{name} could not be converted to an array: {e}") from e
  if a.dtype == object or not (np.issubdtype(a.dtype, np.number)
                               or a.dtype == np.bool_):
    raise ValueError(f"{name} must hold numbers; got dtype {a.dtype}.")
  if np.iscomplexobj(a):
    raise ValueError(f"{name} must be real; got dtype {a.dtype}.")
  if a.ndim == 1:
    raise ValueError(
        f"{name} is 1-D with shape {a.shape}; samples must be a 2-D array "
        f"[n_samples, dim]. For a scalar variable pass {name}.reshape(-1, 1).")
  if a.ndim != 2:
    raise ValueError(
        f"{name} has shape {a.shape}; samples must be a 2-D array "
        f"[n_samples, dim]. Flatten the feature axes with "
        f"{name}.reshape(len({name}), -1).")
  if a.shape[0] == 0 or a.shape[1] == 0:
    raise ValueError(f"{name} is empty (shape {a.shape}); pass at least one "
                     f"sample with at least one feature.")
  finite = np.isfinite(a)
  if not finite.all():
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    raise ValueError(
        f"{name} has {int((~finite).sum())} non-finite values (NaN or inf) in "
        f"{len(bad_rows)} rows, first at row {int(bad_rows[0])}; drop or impute "
        f"those rows (in both x and y) before estimating.")
  return a


def check_xy(x, y, *, min_samples: int = 2):
  """Returns `(x_NxDx, y_NxDy)` as NumPy arrays or raises a ValueError."""
  x_NxDx = _as_matrix(x, "x")
  y_NxDy = _as_matrix(y, "y")
  if x_NxDx.shape[0] != y_NxDy.shape[0]:
    raise ValueError(
        f"x and y must hold the same number of samples (paired row by row); "
        f"got {x_NxDx.shape[0]} rows in x and {y_NxDy.shape[0]} in y.")
  if x_NxDx.shape[0] < min_samples:
    raise ValueError(f"need at least {min_samples} samples; got "
                     f"{x_NxDx.shape[0]}.")
  return x_NxDx, y_NxDy
