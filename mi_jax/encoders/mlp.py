"""MLP encoder: flatten the view, then dense layers (Tschannen et al., §3.2).

The paper's MNIST encoder is 392 -> 300 -> 300 -> 100 with ReLU between
layers and a linear output layer.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
  """Multi-layer perceptron `z = W_L(act(... act(W_1 x)))` on a flattened input.

  Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information
  Maximization for Representation Learning", ICLR 2020, §3.2: encoders
  392-300-300-100 for the two MNIST halves.

  Input `x_Bx...` of any trailing shape is flattened to `[B, in_dim]`. The
  output layer has no activation.
  """

  def __init__(
      self,
      in_dim: int,
      hidden: Sequence[int] = (300, 300),
      out_dim: int = 100,
      *,
      activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      dtype=None,
      param_dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    dims = (in_dim, *hidden, out_dim)
    self.in_dim = in_dim
    self.out_dim = out_dim
    self.activation = activation
    self.layers = nnx.List([
        nnx.Linear(d_in, d_out, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for d_in, d_out in zip(dims[:-1], dims[1:])
    ])

  def __call__(self, x_Bx: jax.Array) -> jax.Array:
    """Returns `z_BxO` for an input `[B, ...]` with `in_dim` features."""
    h_BxD = x_Bx.reshape(x_Bx.shape[0], -1)
    if h_BxD.shape[-1] != self.in_dim:
      raise ValueError(
          f"MLP expects {self.in_dim} features per example, got input of "
          f"shape {x_Bx.shape} ({h_BxD.shape[-1]} features).")
    for layer in self.layers[:-1]:
      h_BxD = self.activation(layer(h_BxD))
    return self.layers[-1](h_BxD)
