"""Small ResNet with BasicBlocks for 32x32 images (He et al. 2016, CIFAR stem).

stem: conv 3x3 (stride 1) -> norm -> ReLU; then stages of BasicBlocks
(conv 3x3 -> norm -> ReLU -> conv 3x3 -> norm, plus a shortcut that is the
identity or a strided 1x1 conv + norm, then ReLU); the first block of every
stage after the first has stride 2; global average pool; optional dense head.

`norm="batch"` uses `nnx.BatchNorm`: it starts in training mode (batch
statistics, running averages updated in place: keep the `nnx.BatchStat`
state, the train state's `rest`); call `model.eval()` for running averages
and `model.train()` to go back. `norm="group"` (GroupNorm) has no batch state
and gives per-example outputs independent of the batch.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax.encoders import conv_op

NORMS = ("batch", "group")


def _norm(kind, channels, *, dtype, param_dtype, rngs):
  if kind == "batch":
    return nnx.BatchNorm(channels, momentum=0.9, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)
  return nnx.GroupNorm(channels, num_groups=min(32, channels), dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a residual shortcut (He et al. 2016)."""

  def __init__(self, in_channels, channels, strides, *, norm, dtype,
               param_dtype, rngs):
    conv = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype,
                rngs=rngs)
    nrm = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = conv_op.Conv(in_channels, channels, (3, 3), strides, **conv)
    self.norm1 = _norm(norm, channels, **nrm)
    self.conv2 = conv_op.Conv(channels, channels, (3, 3), 1, **conv)
    self.norm2 = _norm(norm, channels, **nrm)
    if strides != 1 or in_channels != channels:
      self.proj = conv_op.Conv(in_channels, channels, (1, 1), strides, **conv)
      self.proj_norm = _norm(norm, channels, **nrm)
    else:
      self.proj = nnx.data(None)
      self.proj_norm = nnx.data(None)

  def __call__(self, x_BxHxWxC):
    h = jax.nn.relu(self.norm1(self.conv1(x_BxHxWxC)))
    h = self.norm2(self.conv2(h))
    shortcut = x_BxHxWxC
    if self.proj is not None:
      shortcut = self.proj_norm(self.proj(x_BxHxWxC))
    return jax.nn.relu(h + shortcut)


class ResNet(nnx.Module):
  """ResNet of BasicBlocks; the defaults (2, 2, 2, 2) x 64..512 are ResNet-18.

  He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR
  2016, with the CIFAR stem (3x3 conv, no max-pool) for 32x32 inputs.

  Input: images `[B, H, W, in_channels]`. Output: pooled features `[B,
  widths[-1]]`, or `[B, out_dim]` through a dense head when `out_dim` is set.
  """

  def __init__(
      self,
      in_channels: int = 3,
      stage_sizes: Sequence[int] = (2, 2, 2, 2),
      widths: Sequence[int] = (64, 128, 256, 512),
      out_dim: int | None = None,
      *,
      norm: str = "batch",
      dtype=None,
      param_dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    if norm not in NORMS:
      raise ValueError(f"Unknown norm {norm!r}; known: {list(NORMS)}")
    if len(stage_sizes) != len(widths):
      raise ValueError(
          f"stage_sizes {tuple(stage_sizes)} and widths {tuple(widths)} must "
          "have the same length.")
    self.in_channels = in_channels
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.stem = conv_op.Conv(in_channels, widths[0], (3, 3), 1, use_bias=False,
                             **kw)
    self.stem_norm = _norm(norm, widths[0], **kw)
    blocks = []
    channels = widths[0]
    for stage, (size, width) in enumerate(zip(stage_sizes, widths)):
      for i in range(size):
        strides = 2 if stage > 0 and i == 0 else 1
        blocks.append(BasicBlock(channels, width, strides, norm=norm, **kw))
        channels = width
    self.blocks = nnx.List(blocks)
    self.features_dim = channels
    self.out_dim = out_dim if out_dim is not None else channels
    self.head = (nnx.Linear(channels, out_dim, **kw) if out_dim is not None
                 else nnx.data(None))

  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns `z_BxO` (or pooled features `[B, widths[-1]]` without a head)."""
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
          f"ResNet expects images [B, H, W, {self.in_channels}], got shape "
          f"{tuple(x.shape)}.")
    h = jax.nn.relu(self.stem_norm(self.stem(x)))
    for block in self.blocks:
      h = block(h)
    z_BxC = jnp.mean(h, axis=(1, 2))
    if self.head is not None:
      z_BxC = self.head(z_BxC)
    return z_BxC
