"""A tiny multiview model shared by the sharding and multi-host tests, and
`assert_states_close` for comparing train states.

Encoders are Linear -> BatchNorm -> ReLU -> Linear (BatchNorm makes the mix of
examples in a batch matter, so sharding mistakes show); the critic is the
library's `critics.Bilinear`.
"""

import jax
from flax import nnx

from mi_jax import critics
from mi_jax.objectives import multiview


class BNEncoder(nnx.Module):
  """Linear -> BatchNorm -> ReLU -> Linear."""

  def __init__(self, din, dout, *, rngs):
    self.l1 = nnx.Linear(din, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, rngs=rngs)
    self.l2 = nnx.Linear(32, dout, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.bn(self.l1(x))))


def tiny_multiview_model(din=16, dout=8, seed=0):
  """Two BN encoders and a bilinear critic."""
  rngs = nnx.Rngs(seed)
  return multiview.MultiviewModel(
      BNEncoder(din, dout, rngs=rngs), BNEncoder(din, dout, rngs=rngs),
      critics.Bilinear(dout, dout, rngs=rngs))


def assert_states_close(state_a, state_b, *, rtol, atol):
  """Parameters and `rest` (e.g. BatchNorm statistics) of two train states agree."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  for part in ("params", "rest"):
    for a, b in zip(jax.tree.leaves(getattr(state_a, part)),
                    jax.tree.leaves(getattr(state_b, part)), strict=True):
      np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=part)
