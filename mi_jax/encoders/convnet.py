"""ConvNet encoder of Tschannen et al. 2020, §3.3.

conv 5x5/64/stride 2 -> ReLU -> conv 5x5/128/stride 2 -> ReLU -> LayerNorm
(over H, W, C per example, per-channel scale and bias) -> global average pool
-> dense 100. "SAME" padding, as in the paper's public code; the top half of
an MNIST digit [B, 14, 28, 1] becomes [B, 7, 14, 64] then [B, 4, 7, 128].
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax.encoders import conv_op


class ConvNet(nnx.Module):
  """Two strided convolutions, LayerNorm, global average pooling, dense.

  Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information
  Maximization for Representation Learning", ICLR 2020, §3.3 (the encoder
  that beats an MLP at matched bound values).

  Input: images `[B, H, W, C]`, or flat `[B, H * W * C]` when `image_shape =
  (H, W, C)` is given (e.g. (14, 28, 1) for the top half of MNIST).
  Output: `z_BxO` with `O = out_dim`.
  """

  def __init__(
      self,
      in_channels: int = 1,
      channels: int = 64,
      kernel_size: int = 5,
      out_dim: int = 100,
      *,
      image_shape: Sequence[int] | None = None,
      activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      dtype=None,
      param_dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    if image_shape is not None:
      image_shape = tuple(int(s) for s in image_shape)
      if len(image_shape) != 3 or image_shape[-1] != in_channels:
        raise ValueError(
            f"image_shape must be (H, W, C) with C = in_channels = "
            f"{in_channels}, got {image_shape}.")
    self.image_shape = image_shape
    self.in_channels = in_channels
    self.out_dim = out_dim
    self.activation = activation
    conv_kwargs = dict(kernel_size=(kernel_size, kernel_size), strides=2,
                       padding="SAME", dtype=dtype, param_dtype=param_dtype,
                       rngs=rngs)
    self.conv1 = conv_op.Conv(in_channels, channels, **conv_kwargs)
    self.conv2 = conv_op.Conv(channels, 2 * channels, **conv_kwargs)
    self.norm = nnx.LayerNorm(2 * channels, reduction_axes=(-3, -2, -1),
                              feature_axes=-1, dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs)
    self.head = nnx.Linear(2 * channels, out_dim, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns `z_BxO` for images `[B, H, W, C]` (or flat with image_shape)."""
    if x.ndim == 2 and self.image_shape is not None:
      x = x.reshape(x.shape[0], *self.image_shape)
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(
          f"ConvNet expects images [B, H, W, {self.in_channels}] (or flat "
          f"input with image_shape set), got shape {tuple(x.shape)}.")
    h_BxHxWxC = self.activation(self.conv1(x))
    h_BxHxWxC = self.activation(self.conv2(h_BxHxWxC))
    h_BxHxWxC = self.norm(h_BxHxWxC)
    h_BxC = jnp.mean(h_BxHxWxC, axis=(1, 2))
    return self.head(h_BxC)
