"""Tests for mi_jax.encoders: shapes, registry, jit/grad/vmap, NNX split/merge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax import encoders


def test_mlp_shapes_flatten_and_paper_sizes():
  enc = encoders.MLP(392, rngs=nnx.Rngs(0))
  x = jnp.ones((4, 14, 28, 1))
  z = enc(x)
  assert z.shape == (4, 100) and z.dtype == jnp.float32
  sizes = [(l.kernel.shape) for l in enc.layers]
  assert sizes == [(392, 300), (300, 300), (300, 100)]
  with pytest.raises(ValueError, match="392"):
    enc(jnp.ones((4, 10)))


def test_mlp_bfloat16_compute_keeps_float32_params():
  enc = encoders.MLP(8, (16,), 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  z = enc(jnp.ones((2, 8)))
  assert z.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32
             for p in jax.tree.leaves(nnx.state(enc, nnx.Param)))


def test_make_registry():
  enc = encoders.make("mlp", in_dim=6, hidden=(5,), out_dim=3,
                      rngs=nnx.Rngs(0))
  assert enc(jnp.ones((2, 6))).shape == (2, 3)
  assert "mlp" in encoders.names()
  with pytest.raises(ValueError, match="known encoders"):
    encoders.make("nope", rngs=nnx.Rngs(0))


def _check_functional(enc, x):
  """split/merge + jit + grad + vmap over stacked states all agree."""
  graphdef, state = nnx.split(enc)
  z_ref = enc(x)

  @jax.jit
  def apply(state, x):
    return nnx.merge(graphdef, state)(x)

  np.testing.assert_allclose(apply(state, x), z_ref, rtol=1e-5, atol=1e-5)

  def loss(state, x):
    return jnp.mean(nnx.merge(graphdef, state)(x) ** 2)

  grads = jax.jit(jax.grad(loss))(state, x)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), state)
  z_2 = jax.jit(jax.vmap(apply, in_axes=(0, None)))(stacked, x)
  np.testing.assert_allclose(z_2[1], z_ref, rtol=1e-5, atol=1e-5)
  return grads


def test_mlp_functional():
  _check_functional(encoders.MLP(12, (8,), 4, rngs=nnx.Rngs(0)),
                    jnp.ones((3, 12)))
