"""Audio views in JAX: random fixed-length crops and log-mel spectrograms.

Waveforms are batch-first `wave_BxL`, float32. Everything is jit-safe: shapes
depend only on input shapes and static arguments.

- `random_crops_1d`: one random window of fixed length per recording.
- `mel_filterbank` (NumPy, static) and `log_mel`: |STFT|^2 (Hann window) ->
  triangular mel filters (HTK mel scale) -> log(. + eps).
- `waveform_and_log_mel`: the two modalities of one recording used by CMC.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def random_crops_1d(audio_BxL: jax.Array, length_B: jax.Array, key: jax.Array,
                    size: int) -> jax.Array:
  """One random window of `size` samples per recording, jit-safe.

  A recording of length n >= size gives audio[s : s + size] with
  s ~ U{0..n-size}; a shorter one is placed at offset o ~ U{0..size-n} of a
  zero window of `size` samples.

  Returns:
    crops_BxS (S = size), float32.
  """
  if audio_BxL.ndim != 2:
    raise ValueError(f"random_crops_1d expects [B, L] audio, got shape "
                     f"{tuple(audio_BxL.shape)}.")
  if not 0 < size <= audio_BxL.shape[1]:
    raise ValueError(f"crop size {size} must be in [1, {audio_BxL.shape[1]}] "
                     "(the padded length).")
  b = audio_BxL.shape[0]
  key_start, key_offset = jax.random.split(key)
  length_B = length_B.astype(jnp.int32)
  start_B = jax.random.randint(key_start, (b,), 0,
                               jnp.maximum(length_B - size, 0) + 1)
  offset_B = jax.random.randint(key_offset, (b,), 0,
                                jnp.maximum(size - length_B, 0) + 1)
  pos_BxS = start_B[:, None] - offset_B[:, None] + jnp.arange(size)[None]
  valid_BxS = (pos_BxS >= 0) & (pos_BxS < length_B[:, None])
  taken_BxS = jnp.take_along_axis(
      audio_BxL, jnp.clip(pos_BxS, 0, audio_BxL.shape[1] - 1), axis=1)
  return jnp.where(valid_BxS, taken_BxS, 0.0).astype(jnp.float32)


def _hz_to_mel(f):
  return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
  return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int,
                   fmin: float = 0.0, fmax=None) -> np.ndarray:
  """Triangular mel filters on the rfft bins, `[n_fft // 2 + 1, n_mels]`.

  HTK mel scale m = 2595 log10(1 + f / 700); filter m has corners at the mel
  points m-1, m, m+1 of n_mels + 2 points spaced evenly between fmin and fmax
  (default sample_rate / 2), peak 1 (no area normalisation).
  """
  fmax = sample_rate / 2 if fmax is None else fmax
  if not 0 <= fmin < fmax <= sample_rate / 2:
    raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}"
                     f", fmax={fmax}, sample_rate={sample_rate}.")
  hz_P = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax),
                                n_mels + 2))
  bins_F = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  lo, mid, hi = hz_P[:-2], hz_P[1:-1], hz_P[2:]
  up_FxM = (bins_F[:, None] - lo) / (mid - lo)
  down_FxM = (hi - bins_F[:, None]) / (hi - mid)
  return np.maximum(0.0, np.minimum(up_FxM, down_FxM)).astype(np.float32)


def num_frames(num_samples: int, n_fft: int = 256, hop: int = 80) -> int:
  """Frames of `log_mel` for `num_samples` samples: (L - n_fft) // hop + 1."""
  return (num_samples - n_fft) // hop + 1


def log_mel(wave_BxL: jax.Array, *, sample_rate: int = 8000, n_fft: int = 256,
            hop: int = 80, n_mels: int = 40, eps: float = 1e-6) -> jax.Array:
  """Log-mel spectrogram: log(|rfft(hann * frame)|^2 @ mel_filters + eps).

  Frame t covers samples [t * hop, t * hop + n_fft) (no padding; at 8 kHz the
  defaults are 32 ms windows every 10 ms). Computed in float32.

  Returns:
    logmel_BxTxM with T = (L - n_fft) // hop + 1 and M = n_mels.
  """
  if wave_BxL.ndim != 2:
    raise ValueError(f"log_mel expects [B, L] waveforms, got shape "
                     f"{tuple(wave_BxL.shape)}.")
  t = num_frames(wave_BxL.shape[1], n_fft, hop)
  if t < 1:
    raise ValueError(f"log_mel needs at least n_fft={n_fft} samples, got "
                     f"{wave_BxL.shape[1]}.")
  idx_TxN = np.arange(t)[:, None] * hop + np.arange(n_fft)[None]
  window_N = np.hanning(n_fft + 1)[:-1].astype(np.float32)   # periodic Hann
  frames_BxTxN = wave_BxL.astype(jnp.float32)[:, idx_TxN] * window_N
  power_BxTxF = jnp.abs(jnp.fft.rfft(frames_BxTxN, axis=-1)) ** 2
  mel_FxM = jnp.asarray(mel_filterbank(n_fft, n_mels, sample_rate))
  return jnp.log(power_BxTxF @ mel_FxM + eps)


def pooled_log_mel(wave_BxL: jax.Array, length_B: jax.Array,
                   **log_mel_kwargs) -> jax.Array:
  """Mean and std over the valid frames of `log_mel`: `[B, 2 * n_mels]`.

  Frame t is valid when it starts inside the recording (t * hop < length);
  the raw-input baseline for probes on whole recordings.
  """
  hop = log_mel_kwargs.get("hop", 80)
  lm_BxTxM = log_mel(wave_BxL, **log_mel_kwargs)
  valid_BxT = (jnp.arange(lm_BxTxM.shape[1])[None] * hop
               < jnp.maximum(length_B[:, None], 1))
  w_BxTx1 = valid_BxT[..., None].astype(jnp.float32)
  n_Bx1 = jnp.sum(w_BxTx1, axis=1)
  mean_BxM = jnp.sum(lm_BxTxM * w_BxTx1, axis=1) / n_Bx1
  var_BxM = jnp.sum((lm_BxTxM - mean_BxM[:, None]) ** 2 * w_BxTx1,
                    axis=1) / n_Bx1
  return jnp.concatenate([mean_BxM, jnp.sqrt(var_BxM + 1e-8)], axis=-1)


def waveform_and_log_mel(wave_BxL: jax.Array, **log_mel_kwargs):
  """CMC's two modalities of one recording: (wave_BxL, logmel_BxTxM)."""
  return wave_BxL, log_mel(wave_BxL, **log_mel_kwargs)
