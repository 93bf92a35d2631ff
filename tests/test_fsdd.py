"""FSDD loader (split, labels, scaling) and the JAX audio views (crops, log-mel)."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from mi_jax import audio, data
from mi_jax.data import fsdd, shared

needs_fsdd = pytest.mark.skipif(
    not shared.available(fsdd.RELPATH),
    reason="fsdd/fsdd.npz not in the data sets folder (../shared/data or "
    "$MI_JAX_DATASETS_DIR)")


@needs_fsdd
def test_split_labels_and_scaling():
  test = data.load_fsdd("test")
  train = data.load_fsdd("train", max_len=4000)
  assert len(test["digit"]) == 300 and len(train["digit"]) == 2700
  assert np.bincount(test["speaker"]).tolist() == [50] * 6
  assert np.bincount(train["digit"]).tolist() == [270] * 10
  assert train["audio"].shape == (2700, 4000)
  np.testing.assert_array_equal(test["index"], np.arange(300))
  with np.load(shared.require(fsdd.RELPATH), allow_pickle=False) as f:
    rows = np.flatnonzero(f["index"] < 5)
    r = rows[7]
    raw = f["audio"][f["offsets"][r]:f["offsets"][r + 1]].astype(np.float64)
    assert f["digit"][r] == test["digit"][7]
    assert f["speaker"][r] == test["speaker"][7]
  n = test["length"][7]
  assert n == len(raw)       # every test recording is shorter than 8192
  np.testing.assert_allclose(test["audio"][7, :n], raw / raw.std(), rtol=1e-5,
                             atol=1e-5)
  assert not test["audio"][7, n:].any()
  # Long recordings keep their middle part.
  assert train["length"].max() == 4000 and train["length"].min() >= 1148


def test_missing_folder_names_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="fsdd/fsdd.npz"):
    data.load_fsdd("train", datasets_dir=str(tmp_path))
  with pytest.raises(ValueError, match="split"):
    data.load_fsdd("valid", datasets_dir=str(tmp_path))


def test_random_crops_are_windows_of_the_recording():
  wave = jnp.arange(1, 41, dtype=jnp.float32).reshape(2, 20)
  length = jnp.array([20, 5])
  for seed in range(5):
    crops = np.asarray(audio.random_crops_1d(wave, length,
                                             jax.random.key(seed), 8))
    # Long row: 8 consecutive samples.
    start = int(crops[0, 0]) - 1
    np.testing.assert_array_equal(crops[0], np.arange(start, start + 8) + 1)
    # Short row: its 5 samples, contiguous, zeros around.
    nz = np.flatnonzero(crops[1])
    np.testing.assert_array_equal(crops[1, nz], np.arange(21, 26))
    assert nz.tolist() == list(range(nz[0], nz[0] + 5))


def test_log_mel_equals_numpy_reference():
  wave = jax.random.normal(jax.random.key(0), (2, 1000))
  got = np.asarray(audio.log_mel(wave, n_fft=128, hop=64, n_mels=20))
  x = np.asarray(wave, np.float64)
  t = (1000 - 128) // 64 + 1
  frames = np.stack([x[:, i * 64:i * 64 + 128] for i in range(t)], 1)
  win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(128) / 128)
  power = np.abs(np.fft.rfft(frames * win, axis=-1)) ** 2
  fb = audio.mel_filterbank(128, 20, 8000)
  want = np.log(power @ fb + 1e-6)
  assert got.shape == (2, t, 20)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Filters: HTK-mel triangles between 22 points evenly spaced in mel.
  assert fb.shape == (65, 20)
  top = 2595 * np.log10(1 + 4000 / 700)
  edges = [700 * (10 ** (top * p / 21 / 2595) - 1) for p in range(22)]
  for m in (0, 9, 19):
    lo, mid, hi = edges[m:m + 3]
    for f_bin in range(65):
      f = f_bin * 62.5
      want_w = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
      assert fb[f_bin, m] == pytest.approx(want_w, abs=1e-5)


def test_pooled_log_mel_uses_valid_frames_only():
  wave = jax.random.normal(jax.random.key(0), (1, 1000))
  padded = jnp.pad(wave, ((0, 0), (0, 1000)))
  got = audio.pooled_log_mel(padded, jnp.array([1000]))
  lm = np.asarray(audio.log_mel(padded))
  valid = np.arange(lm.shape[1]) * 80 < 1000
  np.testing.assert_allclose(got[0, :40], lm[0, valid].mean(0), rtol=1e-5)
  np.testing.assert_allclose(got[0, 40:], lm[0, valid].std(0), rtol=1e-3)
