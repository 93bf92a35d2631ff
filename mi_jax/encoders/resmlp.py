"""Residual MLP initialised near the identity (Tschannen et al. 2020, §3.1c).

`num_layers` residual dense layers of constant width `dim`:

  h <- h + relu(W_l h + b_l)   for l < L,      h <- h + W_L h + b_L

with weights ~ truncated N(0, init_std^2) and zero biases, so the encoder is
close to the identity (invertible, well conditioned) at initialisation, but
can become non-invertible during training.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


class ResMLP(nnx.Module):
  """Residual dense stack of width `dim`, the identity plus O(init_std).

  Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information
  Maximization for Representation Learning", ICLR 2020, §3.1c: 5 residual
  layers of width 392 (the paper's code: ReLU on all but the last layer,
  weights ~ truncated N(0, 1e-4^2)); training with InfoNCE/NWJ drives the
  Jacobian's condition number up (see `jacobian_log_condition_number`).

  Input `[B, ...]` is flattened to `[B, dim]`; output `z_BxD`.
  """

  def __init__(
      self,
      dim: int = 392,
      num_layers: int = 5,
      init_std: float = 1e-4,
      *,
      activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
      dtype=None,
      param_dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    self.dim = dim
    self.out_dim = dim
    self.activation = activation
    init = jax.nn.initializers.truncated_normal(stddev=init_std)
    self.layers = nnx.List([
        nnx.Linear(dim, dim, kernel_init=init,
                   bias_init=jax.nn.initializers.zeros, dtype=dtype,
                   param_dtype=param_dtype, rngs=rngs)
        for _ in range(num_layers)
    ])

  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns `z_BxD = x + residuals` for `[B, ...]` input of dim features."""
    h_BxD = x.reshape(x.shape[0], -1)
    if h_BxD.shape[-1] != self.dim:
      raise ValueError(
          f"ResMLP expects {self.dim} features per example, got input of "
          f"shape {tuple(x.shape)}.")
    for layer in self.layers[:-1]:
      h_BxD = h_BxD + self.activation(layer(h_BxD))
    return h_BxD + self.layers[-1](h_BxD)
