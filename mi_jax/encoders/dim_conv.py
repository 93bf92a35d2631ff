"""Deep InfoMax convolutional encoders (Hjelm et al., ICLR 2019, appendix).

The 32x32 encoder of the paper is a DCGAN-style discriminator:

  conv 4x4/2 (64) -> BN -> ReLU -> conv 4x4/2 (128) -> BN -> ReLU
  -> conv 4x4/2 (256) -> BN -> ReLU -> fc 1024 -> BN -> ReLU -> fc 64 = Y.

DIM(L) contrasts Y against every location of an early feature map (the
128-channel 8x8 map for 32x32 inputs). The 64x64 variant adds one more stride-2
conv (512 channels) so the local map (the 256-channel map) is again 8x8.

Shapes are computed from `image_size`, so any input size and channel count
works (28x28x1 MNIST gives a 7x7 local map). `SAME` padding with a 4x4 stride-2
kernel halves the size (rounding up), the same as PyTorch's padding=1 for even
sizes.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax.encoders import conv_op


class DIMConvEncoder(nnx.Module):
  """DIM conv encoder: x_BxHxWxC -> (local_BxhxwxC', fc_BxF, y_BxD).

  `encode(x)` also returns the last conv map (`conv`, flattened), the paper's
  "conv" features for classification probes.
  """

  def __init__(self, *, in_channels: int = 3,
               channels: Sequence[int] = (64, 128, 256),
               fc_dim: int = 1024, code_dim: int = 64, local_layer: int = 1,
               image_size: int | Sequence[int] = 32, kernel_size: int = 4,
               use_bn: bool = True, bn_momentum: float = 0.9,
               rngs: nnx.Rngs):
    if not 0 <= local_layer < len(channels):
      raise ValueError(
          f"local_layer={local_layer} must index channels={channels}")
    h, w = ((image_size, image_size) if isinstance(image_size, int)
            else tuple(image_size))
    convs, norms, c_in = [], [], in_channels
    for c_out in channels:
      convs.append(conv_op.Conv(c_in, c_out, (kernel_size, kernel_size), strides=2,
                                padding="SAME", use_bias=not use_bn, rngs=rngs))
      norms.append(nnx.BatchNorm(c_out, momentum=bn_momentum, rngs=rngs)
                   if use_bn else None)
      h, w, c_in = math.ceil(h / 2), math.ceil(w / 2), c_out
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    self.use_bn = use_bn
    self.local_layer = local_layer
    self.conv_shape = (h, w, c_in)
    self.fc = nnx.Linear(h * w * c_in, fc_dim, use_bias=not use_bn, rngs=rngs)
    self.fc_norm = (nnx.BatchNorm(fc_dim, momentum=bn_momentum, rngs=rngs)
                    if use_bn else None)
    self.out = nnx.Linear(fc_dim, code_dim, rngs=rngs)
    self.local_channels = channels[local_layer]
    self.fc_dim = fc_dim
    self.code_dim = code_dim

  def encode(self, x_BxHxWxC: jax.Array) -> dict[str, jax.Array]:
    """Returns {"local": map at `local_layer`, "conv": last map, "fc", "y"}."""
    h_BxHxWxC, local = x_BxHxWxC, None
    for i, conv in enumerate(self.convs):
      h_BxHxWxC = conv(h_BxHxWxC)
      if self.use_bn:
        h_BxHxWxC = self.norms[i](h_BxHxWxC)
      h_BxHxWxC = jax.nn.relu(h_BxHxWxC)
      if i == self.local_layer:
        local = h_BxHxWxC
    conv_BxK = h_BxHxWxC.reshape(h_BxHxWxC.shape[0], -1)
    fc_BxF = self.fc(conv_BxK)
    if self.use_bn:
      fc_BxF = self.fc_norm(fc_BxF)
    fc_BxF = jax.nn.relu(fc_BxF)
    y_BxD = self.out(fc_BxF)
    return {"local": local, "conv": conv_BxK, "fc": fc_BxF, "y": y_BxD}

  def __call__(self, x_BxHxWxC: jax.Array):
    feats = self.encode(x_BxHxWxC)
    return feats["local"], feats["fc"], feats["y"]


def dim_conv32(*, rngs: nnx.Rngs, **kwargs) -> DIMConvEncoder:
  """The paper's 32x32 encoder (CIFAR): conv 64-128-256, fc 1024, Y 64."""
  kwargs = {"channels": (64, 128, 256), "image_size": 32, "local_layer": 1,
            **kwargs}
  return DIMConvEncoder(rngs=rngs, **kwargs)


def dim_conv64(*, rngs: nnx.Rngs, **kwargs) -> DIMConvEncoder:
  """64x64 variant (STL-10 crops): conv 64-128-256-512, local map 8x8x256."""
  kwargs = {"channels": (64, 128, 256, 512), "image_size": 64,
            "local_layer": 2, **kwargs}
  return DIMConvEncoder(rngs=rngs, **kwargs)
