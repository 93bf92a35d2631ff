"""Autoregressive context networks for CPC: c_t sees only z_{<=t}.

- `GRUContext`: a GRU over time `[B, T, D] -> [B, T, H]` (CPC speech: hidden
  256 in the paper). On a grid `[B, H, W, D]` it runs down each column, so
  c_{i,j} depends on z_{0..i, j} only (the image variant of the issue).
- `RowCausalConvContext`: a PixelCNN-style stack of convolutions that are
  causal along rows: layer l at (i, j) reads rows i-k+1..i of all columns
  j-k//2..j+k//2, so c_{i,j} depends on z_{u,v} with u <= i only (Hénaff et
  al. 2019, "Data-Efficient Image Recognition with Contrastive Predictive
  Coding", use a masked-convolution context of this kind; van den Oord et al.
  2018 a PixelCNN).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax.encoders import conv_op


class GRUContext(nnx.Module):
  """GRU over the time axis of `[B, T, D]`, or down the columns of `[B, H, W, D]`.

  Output `c` of the same layout with `out_dim = hidden` channels;
  c_t = GRU(z_1..z_t).
  """

  def __init__(self, in_dim: int, hidden: int = 256, *, rngs: nnx.Rngs):
    self.out_dim = hidden
    self.rnn = nnx.RNN(nnx.GRUCell(in_dim, hidden, rngs=rngs))

  def __call__(self, z: jax.Array) -> jax.Array:
    if z.ndim == 3:
      return self.rnn(z)
    if z.ndim != 4:
      raise ValueError(f"GRUContext expects [B, T, D] or [B, H, W, D], got "
                       f"shape {tuple(z.shape)}.")
    b, h, w, d = z.shape
    cols_BWxHxD = jnp.transpose(z, (0, 2, 1, 3)).reshape(b * w, h, d)
    c = self.rnn(cols_BWxHxD).reshape(b, w, h, self.out_dim)
    return jnp.transpose(c, (0, 2, 1, 3))


class RowCausalConvContext(nnx.Module):
  """Residual stack of row-causal convs on a grid `[B, H, W, D] -> [B, H, W, C]`.

  Each conv pads k-1 rows on top and none below ("causal" in rows) and k//2
  columns on both sides, so no output row reads a later input row. A 1x1
  projection maps D to C first; every layer is c <- c + conv(relu(c)).
  """

  def __init__(self, in_dim: int, hidden: int = 64, *, layers: int = 3,
               kernel: int = 3, rngs: nnx.Rngs):
    self.out_dim = hidden
    self.inp = nnx.Linear(in_dim, hidden, rngs=rngs)
    pad = ((kernel - 1, 0), (kernel // 2, kernel // 2))
    self.convs = nnx.List([
        conv_op.Conv(hidden, hidden, kernel_size=(kernel, kernel), padding=pad,
                     rngs=rngs) for _ in range(layers)])

  def __call__(self, z_BxHxWxD: jax.Array) -> jax.Array:
    if z_BxHxWxD.ndim != 4:
      raise ValueError(f"RowCausalConvContext expects [B, H, W, D], got shape "
                       f"{tuple(z_BxHxWxD.shape)}.")
    c = self.inp(z_BxHxWxD)
    for conv in self.convs:
      c = c + conv(jax.nn.relu(c))
    return c
