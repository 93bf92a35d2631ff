"""Sharded train step over 8 fake CPU devices == single-device step on the same global batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mi_jax import bounds, training, views
from mi_jax.objectives import multiview
from mi_jax.training import sharding

import tiny_models  # tests/tiny_models.py


def _setup(bound="infonce"):
  model = tiny_models.tiny_multiview_model()
  tx = optax.sgd(0.5, momentum=0.9)
  graphdef, state = training.init_train_state(model, tx)
  # Random crops (key-dependent views) + per-view noise exercise the RNG too.
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("crops", size=4, flatten=True), bound=bound,
      noise_std=0.05)
  return graphdef, tx, state, training.make_train_step(graphdef, tx, loss_fn)


def _batch(b, seed=1):
  return {"image": jax.random.uniform(jax.random.key(seed), (b, 6, 6, 1)),
          "label": jnp.arange(b, dtype=jnp.int32) % 10}


def _logsumexp(x_BxC):
  m = x_BxC.max(axis=1)
  return m + np.log(np.exp(x_BxC - m[:, None]).sum(axis=1))


def _scores(graphdef, state, batch, key):
  """The train-mode [B, B] score matrix the step's loss saw (views + noise of `key`)."""
  model = training.merge_model(graphdef, state.params, state.rest)
  model.train()
  key_views, key_n1, key_n2 = jax.random.split(key, 3)
  v1, v2 = views.make_views("crops", size=4, flatten=True)(batch["image"],
                                                            key_views)
  v1 = v1 + 0.05 * jax.random.normal(key_n1, v1.shape, v1.dtype)
  v2 = v2 + 0.05 * jax.random.normal(key_n2, v2.shape, v2.dtype)
  return model(v1, v2)


def _assert_trees_close(a, b, tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol,
                               atol=tol)


def test_sharded_step_equals_single_device():
  assert jax.device_count() == 8
  graphdef, tx, state, step = _setup()
  mesh = sharding.make_mesh()
  sstep = sharding.shard_train_step(step, mesh)
  single = jax.jit(step)
  batch = _batch(32)
  s1, s8 = state, sharding.replicate(state, mesh)
  b8 = sharding.shard_batch(batch, mesh)
  assert len(b8["image"].sharding.device_set) == 8
  for t in range(3):
    key = jax.random.key(10 + t)
    before = s1
    s1, m1 = single(s1, batch, key)
    s8, m8 = sstep(s8, b8, key)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=1e-5,
                               atol=1e-5)
  # The score matrix spans the global batch: the sharded bound is InfoNCE on
  # the [32, 32] scores (float64 NumPy), not the mean of the devices' local
  # [4, 4] InfoNCE (which is bounded by log 4), and the two differ.
  scores = np.asarray(_scores(graphdef, before, batch, key), np.float64)
  global_nce = np.mean(np.diag(scores) - _logsumexp(scores)) + np.log(32)
  local_nce = np.mean([
      np.mean(np.diag(blk) - _logsumexp(blk)) + np.log(4)
      for blk in (scores[i:i + 4, i:i + 4] for i in range(0, 32, 4))])
  np.testing.assert_allclose(float(m8["mi"]), global_nce, rtol=1e-4, atol=1e-5)
  assert abs(global_nce - local_nce) > 1e-3, (global_nce, local_nce)
  _assert_trees_close(s8.params, s1.params, 1e-5)
  _assert_trees_close(s8.rest, s1.rest, 1e-5)   # global BatchNorm statistics
  assert s8.params["g1"]["l1"]["kernel"][...].sharding.is_fully_replicated


def test_gradients_equal_single_device():
  graphdef, tx, state, _ = _setup()
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")

  def grads(state, batch, key):
    def f(params):
      model = training.merge_model(graphdef, params, state.rest)
      return loss_fn(model, batch, key)[0]
    return jax.grad(f)(state.params)

  mesh = sharding.make_mesh()
  batch = {"image": jax.random.uniform(jax.random.key(3), (16, 8, 4, 1))}
  key = jax.random.key(4)
  g1 = jax.jit(grads)(state, batch, key)
  g8 = sharding.shard_train_step(grads, mesh, has_state_output=False)(
      state, sharding.shard_batch(batch, mesh), key)
  _assert_trees_close(g8, g1, 1e-5)


def test_negatives_are_gathered_across_devices():
  """The sharded loss is the global-batch loss, not a mean of per-device losses."""
  mesh = sharding.make_mesh()
  scores_fn = lambda state, batch, key: {"mi": bounds.infonce(
      batch["a"] @ batch["b"].T)}
  a = jax.random.normal(jax.random.key(0), (16, 4))
  batch = {"a": a, "b": a + 0.1}
  got = sharding.shard_train_step(scores_fn, mesh, has_state_output=False)(
      None, sharding.shard_batch(batch, mesh), None)["mi"]
  want = bounds.infonce(a @ (a + 0.1).T)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert float(got) > np.log(2) + 0.1   # per-device [2, 2] blocks cap at log 2


def test_indivisible_batch_raises_clear_error():
  _, _, state, step = _setup()
  mesh = sharding.make_mesh()
  sstep = sharding.shard_train_step(step, mesh)
  with pytest.raises(ValueError, match="multiple of 8"):
    sstep(state, _batch(12), jax.random.key(0))
  with pytest.raises(ValueError, match="multiple of 8"):
    sharding.shard_batch(_batch(12), mesh)


def test_host_local_to_global_single_process():
  mesh = sharding.make_mesh()
  batch = _batch(16)
  g = sharding.host_local_to_global(batch, mesh)
  np.testing.assert_array_equal(np.asarray(g["image"]), batch["image"])
  assert g["image"].sharding.spec == jax.P("data")
  assert sharding.local_batch_slice(16, 1, 2) == slice(8, 16)


def test_sharded_multi_step_equals_single_device():
  _, _, state, step = _setup()
  mesh = sharding.make_mesh()
  multi = training.make_multi_step(step, 2)
  batches = jax.vmap(lambda k: _batch(16, k))(jnp.arange(2))
  key = jax.random.key(7)
  s1, m1 = jax.jit(multi)(state, batches, key)
  s8, m8 = sharding.shard_train_step(multi, mesh, batch_dim=1)(
      state, batches, key)
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5, atol=1e-5)
  _assert_trees_close(s8.params, s1.params, 1e-5)
