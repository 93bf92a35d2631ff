"""Encoder diagnostics: Jacobian conditioning (Tschannen et al., §3.1c)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def jacobian_log_condition_numbers(
    fn: Callable[[jax.Array], jax.Array], x_Bx: jax.Array) -> jax.Array:
  """Per-point `log(sigma_max / sigma_min)` of the Jacobian of `fn` at each row.

  `fn` maps a batch `[N, ...]` to `[N, D']` row by row (no batch
  statistics: call BatchNorm models in eval mode); the Jacobian
  `d fn(x_b) / d x_b`, flattened to `[D', D]`, has singular values
  `sigma_1 >= ... >= sigma_min(D, D')` give the log condition number, as
  plotted (percentiles over points) in Tschannen et al., ICLR 2020, Fig. 2c.

  Returns:
    log_cond_B, float32.
  """
  x_Bx = jnp.asarray(x_Bx, jnp.float32)
  batch = x_Bx.shape[0]

  def single(x):
    return fn(x[None])[0].reshape(-1).astype(jnp.float32)

  # Reverse mode when there are fewer outputs than inputs (fewer passes; and
  # the conv encoders' `conv_op` gradients are reverse-mode only).
  out_size = jax.eval_shape(single, x_Bx[0]).size
  jacobian = jax.jacrev if out_size <= x_Bx[0].size else jax.jacfwd
  jac_BxOxD = jax.vmap(jacobian(single))(x_Bx).reshape(
      batch, -1, x_Bx[0].size)
  sigma_BxK = jnp.linalg.svd(jac_BxOxD, compute_uv=False)
  return jnp.log(sigma_BxK[:, 0]) - jnp.log(sigma_BxK[:, -1])


def jacobian_log_condition_number(
    fn: Callable[[jax.Array], jax.Array], x_Bx: jax.Array) -> jax.Array:
  """Mean over the points `x_Bx` of `jacobian_log_condition_numbers`."""
  return jnp.mean(jacobian_log_condition_numbers(fn, x_Bx))
