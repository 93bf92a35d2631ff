"""Shared plug-in glue of speech methods (CPC, CMC) on the Free Spoken Digit Dataset.

Config fields read: `datasets_dir` (the shared data folder; default
../shared/data or $MI_JAX_DATASETS_DIR), `fsdd.max_len` (samples kept per
recording, default 8192), `batch_size`. Evaluations: two linear probes on
whole recordings, `speaker` (6-way) and `digit` (10-way), each beside the
same probe on pooled log-mel features (mean and std over valid frames,
computed in JAX) and, with `config.<name>.random_baseline`, on a randomly
initialised model. Options of each probe come from `config.speaker` /
`config.digit`.
"""

import functools

import numpy as np

from mi_jax import audio
from mi_jax.objectives._method import Evaluation

_LABELS = (("speaker", "speaker"), ("digit", "digit"))


@functools.lru_cache(maxsize=4)
def _load(split: str, datasets_dir, max_len: int) -> dict:
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  arrays = data_lib.load_fsdd(split, datasets_dir=datasets_dir,
                              max_len=max_len)
  for array in arrays.values():
    array.flags.writeable = False
  return arrays


def fsdd_splits(config) -> tuple[dict, dict]:
  """(train, test) FSDD arrays of a config (cached per process, read-only)."""
  max_len = int(config.get("fsdd", {}).get("max_len", 8192))
  datasets_dir = config.get("datasets_dir")
  return (_load("train", datasets_dir, max_len),
          _load("test", datasets_dir, max_len))


def heldout_subset(arrays: dict, config) -> dict:
  """The first `config.heldout_examples` rows (all if unset) for the held-out bound.

  Keeps the periodic held-out evaluation cheap on a CPU; the probes still
  use every test example.
  """
  n = config.get("heldout_examples", None)
  return arrays if not n else {k: v[:int(n)] for k, v in arrays.items()}


def _inputs(arrays):
  return {"audio": arrays["audio"], "length": arrays["length"]}


def raw_log_mel(inputs) -> "jax.Array":
  """Raw-input baseline: mean and std of the log-mel frames of each recording."""
  return audio.pooled_log_mel(inputs["audio"], inputs["length"])


def fsdd_evaluations(features, train: dict, test: dict, *,
                     primary=None) -> list[Evaluation]:
  """Speaker (6-way) and digit (10-way) probes on whole recordings.

  `features(model, {"audio": f32 [C, L], "length": i32 [C]})` returns the
  pooled features (or named sets, probed one by one; `primary` unsuffixed).
  """
  return [
      Evaluation(
          inputs={"train": _inputs(train), "test": _inputs(test)},
          labels={"train": np.asarray(train[key]),
                  "test": np.asarray(test[key])},
          features=features, protocol="probe", name=name,
          raw_features=raw_log_mel, raw_name="logmel", primary=primary,
          chunk_size=300)
      for name, key in _LABELS]


def format_fsdd_results(results: dict, primary=None) -> str:
  """Table lines: each probe, learned vs log-mel vs random-init model."""
  lines = []
  for name, _ in _LABELS:
    learned = results.get(f"{name}/linear_acc", float("nan"))
    raw = results.get(f"{name}/logmel_linear_acc", float("nan"))
    rand = results.get(f"{name}/random_linear_acc", float("nan"))
    lines.append(f"{name:8s} linear probe: learned {100 * learned:5.1f}%   "
                 f"log-mel {100 * raw:5.1f}%   random encoder "
                 f"{100 * rand:5.1f}%")
  return "\n".join(lines)
