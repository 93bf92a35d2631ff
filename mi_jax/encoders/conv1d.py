"""1-D strided convolutional encoder for waveforms and spectrograms (CPC speech).

van den Oord, Li, Vinyals, "Representation Learning with Contrastive
Predictive Coding", 2018, §3.1: five convolutions with kernels 10, 8, 4, 4, 4
and strides 5, 4, 2, 2, 2 (a 160x down-sampling: one 10 ms frame per 160
samples at 16 kHz) and 512 channels with ReLU. Our default keeps the kernels
and strides and takes the width as an argument (the speech configs use 64).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax.encoders import conv_op


class Conv1DEncoder(nnx.Module):
  """Strided 1-D convs ("SAME" padding), ReLU and channel LayerNorm, then a dense.

  Input `[B, L]` (a waveform, one channel) or `[B, L, C]` (e.g. log-mel
  frames with C = n_mels). Output `z_BxTxO` with T = ceil(L / prod(strides))
  (T = L / 160 for the paper's strides and L divisible by 160), or the mean
  over time `z_BxO` when `pool=True`.

  Args:
    in_channels: C (1 for a waveform).
    channels: width of every conv layer (paper: 512).
    kernels, strides: per layer (paper: (10, 8, 4, 4, 4), (5, 4, 2, 2, 2)).
    out_dim: size of z per frame (a dense layer after the convs).
    pool: average over time (one vector per input).
    norm: LayerNorm over channels after each conv (not in the paper; it keeps
      small runs stable).
  """

  def __init__(self, in_channels: int = 1, channels: int = 512,
               out_dim: int = 512, *,
               kernels: Sequence[int] = (10, 8, 4, 4, 4),
               strides: Sequence[int] = (5, 4, 2, 2, 2),
               pool: bool = False, norm: bool = True, rngs: nnx.Rngs):
    kernels, strides = tuple(kernels), tuple(strides)
    if len(kernels) != len(strides) or not kernels:
      raise ValueError(f"kernels {kernels} and strides {strides} must be "
                       "non-empty and of equal length.")
    self.in_channels = in_channels
    self.out_dim = out_dim
    self.pool = pool
    self.downsampling = 1
    for s in strides:
      self.downsampling *= s
    convs, norms = [], []
    c_in = in_channels
    for k, s in zip(kernels, strides):
      convs.append(conv_op.Conv(c_in, channels, kernel_size=(k,), strides=(s,),
                                padding="SAME", rngs=rngs))
      norms.append(nnx.LayerNorm(channels, rngs=rngs) if norm else None)
      c_in = channels
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    self.head = nnx.Linear(channels, out_dim, rngs=rngs)

  def __call__(self, x: jax.Array, valid_B=None) -> jax.Array:
    """`z_BxTxO` (or `z_BxO` with `pool`) of input `[B, L]` / `[B, L, C]`.

    With `pool`, `valid_B` (valid input steps per row) restricts the mean to
    the output frames t with t * downsampling < valid (padding ignored).
    """
    if x.ndim == 2 and self.in_channels == 1:
      x = x[..., None]
    if x.ndim != 3 or x.shape[-1] != self.in_channels:
      raise ValueError(
          f"Conv1DEncoder expects [B, L] or [B, L, {self.in_channels}], got "
          f"shape {tuple(x.shape)}.")
    h_BxTxC = x
    for conv, norm in zip(self.convs, self.norms):
      h_BxTxC = jax.nn.relu(conv(h_BxTxC))
      if norm is not None:
        h_BxTxC = norm(h_BxTxC)
    z_BxTxO = self.head(h_BxTxC)
    if not self.pool:
      return z_BxTxO
    if valid_B is None:
      return jnp.mean(z_BxTxO, axis=1)
    w_BxTx1 = (jnp.arange(z_BxTxO.shape[1])[None] * self.downsampling
               < jnp.maximum(valid_B[:, None], 1))[..., None]
    return (jnp.sum(jnp.where(w_BxTx1, z_BxTxO, 0.0), axis=1)
            / jnp.sum(w_BxTx1, axis=1))
