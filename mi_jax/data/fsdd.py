"""The Free Spoken Digit Dataset (FSDD) from the shared data folder, as padded arrays.

`fsdd/fsdd.npz` (see ../shared/data/README.md, section 4) holds 3,000
recordings at 8 kHz by 6 speakers, 50 takes per (speaker, digit). Split: takes
0-4 are the test set (300), takes 5-49 the train set (2,700).

`load_fsdd(split)` returns one row per recording: the waveform divided by its
own standard deviation (zero mean is not enforced), truncated to `max_len`
samples (the middle part is kept) and zero-padded on the right, with its true
length, digit, speaker and row index. Training takes random fixed-length crops
of these rows inside the jitted loss (`mi_jax.audio.random_crops_1d`), so the
crop of step t follows from the step key and a resumed run is exact. This
module is NumPy only (mi_jax.data does not import JAX).
"""

import numpy as np

from mi_jax.data import shared

RELPATH = "fsdd/fsdd.npz"
SAMPLE_RATE = 8000
NUM_SPEAKERS = 6
NUM_DIGITS = 10
_TEST_TAKES = 5


def load_fsdd(split: str, *, datasets_dir=None, max_len: int = 8192) -> dict:
  """FSDD recordings of one split as padded NumPy arrays.

  Args:
    split: "train" (takes 5-49, 2,700 recordings) or "test" (takes 0-4, 300).
    datasets_dir: the data sets folder (default: `mi_jax.data.datasets_dir()`).
    max_len: samples kept per recording; longer ones keep their middle part
      (8192 keeps 96% of the recordings whole; the longest has 18,262).

  Returns:
    {"audio": f32 [N, max_len] (each recording / its std, zero-padded),
     "length": i32 [N] (valid samples, <= max_len), "digit": i32 [N] (0-9),
     "speaker": i32 [N] (0-5), "index": i32 [N] (0..N-1, row in the split)}.
  Raises:
    ValueError: for an unknown split or max_len < 1.
    FileNotFoundError: when fsdd/fsdd.npz is not in the data sets folder.
  """
  if split not in ("train", "test"):
    raise ValueError(f"FSDD split must be 'train' or 'test', got {split!r}.")
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}.")
  with np.load(shared.require(RELPATH, datasets_dir), allow_pickle=False) as f:
    audio, offsets = f["audio"], f["offsets"]
    take = f["index"]
    rows = np.flatnonzero(take < _TEST_TAKES if split == "test"
                          else take >= _TEST_TAKES)
    digit = f["digit"][rows].astype(np.int32)
    speaker = f["speaker"][rows].astype(np.int32)
  out = np.zeros((len(rows), max_len), np.float32)
  length = np.zeros(len(rows), np.int32)
  for n, r in enumerate(rows):
    wave = audio[offsets[r]:offsets[r + 1]].astype(np.float32)
    wave /= max(float(wave.std()), 1e-3)
    start = max(0, (len(wave) - max_len) // 2)
    wave = wave[start:start + max_len]
    out[n, :len(wave)] = wave
    length[n] = len(wave)
  return {"audio": out, "length": length, "digit": digit, "speaker": speaker,
          "index": np.arange(len(rows), dtype=np.int32)}
