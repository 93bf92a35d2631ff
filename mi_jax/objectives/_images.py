"""Shared plug-in glue of image methods: labelled splits, held-out batches, the probe.

Config fields read: `dataset`, `data_dir`, `train_split` (default "train"),
`probe_train_split` / `probe_test_split` (default "train" / "test"; the test
split also gives the held-out bound), `streaming` (read the train split by
random access instead of into memory), `batch_size`.
"""

import functools

import numpy as np

from mi_jax.objectives._method import Evaluation


@functools.lru_cache(maxsize=8)
def _load(name: str, split: str, data_dir) -> dict:
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  arrays = data_lib.load_arrays(name, split, data_dir=data_dir)
  for array in arrays.values():
    array.flags.writeable = False
  return arrays


def load_split(config, split: str) -> dict:
  """`mi_jax.data.load_arrays(config.dataset, split)`, cached per process (read-only)."""
  return _load(config.dataset, split, config.get("data_dir"))


def image_splits(config) -> tuple:
  """(train_data, probe_train, probe_test) of an image config.

  `train_data` feeds the train iterator (the arrays, or a random-access
  source with `config.streaming`); the probe splits are `{"image", "label"}`
  NumPy arrays.
  """
  probe_train = load_split(config, config.get("probe_train_split", "train"))
  probe_test = load_split(config, config.get("probe_test_split", "test"))
  train_split = config.get("train_split", "train")
  if config.get("streaming", False):
    from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    train_data = data_lib.data_source(config.dataset, train_split,
                                      data_dir=config.get("data_dir"))
  elif train_split == config.get("probe_train_split", "train"):
    train_data = probe_train
  else:
    train_data = load_split(config, train_split)
  return train_data, probe_train, probe_test


def split_batches(arrays: dict, batch_size: int) -> list:
  """Consecutive batches of `batch_size` rows of a dict of arrays, last partial one dropped.

  The held-out bound uses the training batch size (the bound depends on it,
  e.g. InfoNCE <= log B).
  """
  n = len(next(iter(arrays.values())))
  if n < batch_size:
    raise ValueError(f"the held-out split has {n} examples, fewer than "
                     f"config.batch_size={batch_size}")
  return [{k: v[i:i + batch_size] for k, v in arrays.items()}
          for i in range(0, n - batch_size + 1, batch_size)]


def probe_evaluation(features, probe_train: dict, probe_test: dict, *,
                     raw_features=None, raw_name: str = "pixel",
                     primary=None) -> Evaluation:
  """The linear-probe / kNN / MLP-probe evaluation on the images of two labelled splits."""
  return Evaluation(
      inputs={"train": probe_train["image"], "test": probe_test["image"]},
      labels={"train": np.asarray(probe_train["label"]),
              "test": np.asarray(probe_test["label"])},
      features=features, protocol="probe", name="probe",
      raw_features=raw_features, raw_name=raw_name, primary=primary)
