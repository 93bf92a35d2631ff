"""The blocked (memory-linear) bound chosen by config in an objective other than multiview: DIM.

Blocked InfoNCE with several rows per positive (DIM's local term contrasted
over codes) equals the dense masked bound, and DIM's sharded train step with
`block_size` equals the dense one, in value and gradients, on 8 fake devices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import bounds
from mi_jax.bounds import blocked
from mi_jax.encoders.dim_conv import DIMConvEncoder
from mi_jax.objectives import dim
from mi_jax.training import init_train_state, make_train_step, sharding

import tiny_models  # tests/tiny_models.py


def _grads(use_blocked, m):
  if use_blocked:
    f = lambda a, b, w: blocked.infonce(a, b, weight=w, block_size=4,
                                        rows_per_positive=m)
  else:
    f = lambda a, b, w: bounds.infonce(
        a @ w @ b.T, mask=dim.local_positive_mask(b.shape[0], m))
  return jax.value_and_grad(f, argnums=(0, 1, 2))


def test_rows_per_positive_equals_dense_masked_infonce_one_device_and_mesh():
  k, m, d = 16, 3, 5          # 48 rows of za: 6 per device, zb 2 per device
  r = np.random.RandomState(0)
  zb = r.normal(size=(k, d)).astype(np.float32)
  za = (np.repeat(zb, m, axis=0) + r.normal(size=(k * m, d))).astype(np.float32)
  w = (0.4 * r.normal(size=(d, d))).astype(np.float32)
  ref_value, ref_g = jax.jit(_grads(False, m))(za, zb, w)
  # float64 NumPy reference of the value.
  s = za.astype(np.float64) @ w @ zb.T.astype(np.float64)
  lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
  pos = s[np.arange(k * m), np.arange(k * m) // m]
  np.testing.assert_allclose(ref_value, np.mean(pos - lse) + np.log(k),
                             rtol=1e-5)
  one_value, one_g = jax.jit(_grads(True, m))(za, zb, w)
  mesh = sharding.make_mesh()
  rows = sharding.batch_sharding(mesh)
  jitted = jax.jit(_grads(True, m), in_shardings=(
      rows, rows, sharding.replicated(mesh)))
  with jax.set_mesh(mesh):
    mesh_value, mesh_g = jitted(za, zb, w)
    assert "all_gather" in jitted.lower(za, zb, w).as_text()
  for value, g in ((one_value, one_g), (mesh_value, mesh_g)):
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for x, y in zip(g, ref_g):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_rows_per_positive_bad_shapes_say_what_to_do():
  z = jnp.ones((6, 2))
  with pytest.raises(ValueError, match="rows_per_positive"):
    blocked.infonce(z, z[:4], rows_per_positive=2)
  with pytest.raises(ValueError, match="block_size must be a positive int"):
    blocked.resolve("infonce", 0)
  with pytest.raises(ValueError, match="No memory-linear"):
    blocked.resolve("jsd", 8)
  with pytest.raises(ValueError, match="estimator='infonce'"):
    dim.make_dim_loss(estimator="infonce", local_contrast="locations",
                      block_size=8)


def _step(block_size):
  enc = DIMConvEncoder(in_channels=1, channels=(8, 16, 16), fc_dim=32,
                       code_dim=6, image_size=16, rngs=nnx.Rngs(0))
  model = dim.make_dim_model(
      enc, rngs=nnx.Rngs(1), local_shape=(4, 4, 16), alpha=0.0, beta=1.0,
      gamma=0.1, local_embed_dim=8, local_hidden_dim=8,
      prior_hidden_dims=(16, 8))
  # SGD: the new parameters are params - lr * grad, so equal parameters
  # mean equal gradients.
  tx = optax.sgd(0.1)
  graphdef, state = init_train_state(model, tx)
  return state, make_train_step(graphdef, tx, dim.make_dim_loss(
      estimator="infonce", alpha=0.0, beta=1.0, gamma=0.1,
      local_contrast="codes", block_size=block_size))


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_dim_blocked_local_term_equals_dense_in_the_sharded_step():
  n = jax.device_count()
  batch = {"image": jax.random.uniform(jax.random.key(9), (2 * n, 16, 16, 1)),
           "label": jnp.zeros((2 * n,), jnp.int32)}
  mesh, key = sharding.make_mesh(), jax.random.key(10)
  out = {}
  for bs in (0, 5):   # 2 images x 16 locations = 32 rows per device
    state, step = _step(bs)
    sharded = sharding.shard_train_step(step, mesh)
    out[bs] = sharded(sharding.replicate(state, mesh),
                      sharding.shard_batch(batch, mesh), key)
    if bs:
      with jax.set_mesh(mesh):
        text = sharded.jitted.lower(sharding.replicate(state, mesh),
                                    sharding.shard_batch(batch, mesh),
                                    key).as_text()
      assert "all_gather" in text   # the shard_map path ran
  (dense_state, dense_m), (blk_state, blk_m) = out[0], out[5]
  assert abs(float(dense_m["mi_local"])) > 1e-3
  for k in ("loss", "mi_local", "grad_norm"):
    np.testing.assert_allclose(blk_m[k], dense_m[k], rtol=1e-5, atol=1e-6,
                               err_msg=k)
  tiny_models.assert_states_close(blk_state, dense_state, rtol=1e-5,
                                  atol=1e-6)
