"""Blocked (memory-linear) bounds row-sharded over the 8-device mesh == dense, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mi_jax import bounds, critics
from mi_jax.bounds import blocked
from mi_jax.training import sharding

NAMES = ("infonce", "dv", "nwj")


def _embeddings(k, d, seed=0):
  r = np.random.RandomState(seed)
  za = r.normal(size=(k, d)).astype(np.float32)
  zb = (0.5 * za + r.normal(size=(k, d))).astype(np.float32)
  w = (0.3 * r.normal(size=(d, d))).astype(np.float32)
  return za, zb, w


def _sharded(fn, mesh):
  """fn(za, zb, w) jitted with za, zb split over all mesh axes, traced under the mesh."""
  rows = sharding.batch_sharding(mesh)
  jitted = jax.jit(fn, in_shardings=(rows, rows, sharding.replicated(mesh)))

  def call(*args):
    with jax.set_mesh(mesh):
      return jitted(*args), jitted.lower(*args).as_text()
  return call


def test_blocked_on_mesh_equals_dense_values_and_gradients():
  mesh = sharding.make_mesh()
  za, zb, w = _embeddings(k=64, d=6)   # 8 rows per device, 3 blocks of 3

  def grads(name, use_blocked):
    if use_blocked:
      f = lambda a, b, w: blocked.get(name)(a, b, weight=w, block_size=3)
    else:
      f = lambda a, b, w: bounds.get(name)(a @ w @ b.T)
    return jax.value_and_grad(f, argnums=(0, 1, 2))

  out, text = _sharded(
      lambda a, b, w: {n: grads(n, True)(a, b, w) for n in NAMES}, mesh)(
          za, zb, w)
  # The shard_map path ran: zb all-gathered, its gradient reduce-scattered.
  assert "all_gather" in text and "reduce_scatter" in text
  for name in NAMES:
    value, g = out[name]
    ref_value, ref_g = jax.jit(grads(name, False))(za, zb, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, err_msg=name)
    for x, y in zip(g, ref_g):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=name)
    assert g[0].sharding.spec == P("data")


@pytest.mark.parametrize("shape,names", [((8,), ("data",)),
                                         ((4, 2), ("data", "model"))])
def test_row_logsumexp_excludes_global_diagonal_on_mesh(shape, names):
  """Device p's rows start at global row p*K/n: the excluded entry is (i, i) globally.

  On the 4 x 2 mesh the rows are split over both axes (data-major).
  """
  mesh = sharding.make_mesh(shape=shape, axis_names=names)
  za, zb, _ = _embeddings(k=32, d=4, seed=1)
  (lse, _), text = _sharded(
      lambda a, b, w: (blocked.row_logsumexp(a, b, exclude_diagonal=True,
                                             block_size=2), w), mesh)(
          za, zb, np.zeros(()))
  s = za.astype(np.float64) @ zb.T.astype(np.float64)
  np.fill_diagonal(s, -np.inf)
  ref = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
  np.testing.assert_allclose(lse, ref, rtol=1e-5)
  assert "all_gather" in text
  assert lse.sharding.spec == sharding.batch_sharding(mesh).spec


def test_memory_per_device_is_linear_on_mesh():
  """Dense: every device holds its K/8 x K rows of scores; blocked: block x K."""
  mesh = sharding.make_mesh()
  k, d, block = 2048, 8, 16
  z = jnp.zeros((k, d), jnp.float32)
  rows = NamedSharding(mesh, P("data"))

  def temp_bytes(f):
    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)),
                in_shardings=(rows, rows))
    with jax.set_mesh(mesh):
      return g.lower(z, z).compile().memory_analysis().temp_size_in_bytes

  dense = temp_bytes(lambda a, b: bounds.infonce(a @ b.T))
  blk = temp_bytes(lambda a, b: blocked.infonce(a, b, block_size=block))
  local_scores = k // 8 * k * 4          # 2 MiB: one device's rows of [K, K]
  assert dense >= local_scores
  assert blk < local_scores / 4


@pytest.mark.parametrize("name,kwargs", [
    ("bilinear", {}), ("separable", {"hidden": 5, "out_dim": 3}),
    ("inner_product", {"cosine": True, "temperature": 0.5})])
def test_critic_factors_give_the_scores(name, kwargs):
  critic = critics.make(name, 4, 4, rngs=nnx.Rngs(0), **kwargs)
  za, zb, _ = _embeddings(k=6, d=4, seed=2)
  ua, ub = critic.factors(za, zb)
  np.testing.assert_allclose(ua @ ub.T, critic(za, zb), rtol=1e-5, atol=1e-6)


def test_concat_critic_and_unknown_bound_say_what_to_do():
  critic = critics.make("concat", 4, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="bilinear, separable or inner_product"):
    critic.factors(np.zeros((2, 4)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="infonce, dv, nwj"):
    blocked.get("jsd")
