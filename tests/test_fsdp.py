"""Sharded parameters + optimizer state (FSDP) == replicated; sharded checkpoints move across device counts."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from mi_jax import training, views
from mi_jax.objectives import multiview
from mi_jax.training import checkpoint, sharding

import tiny_models  # tests/tiny_models.py


def _setup():
  """(state, step): the tiny BN multiview model under SGD + momentum.

  Not Adam: it turns the rounding noise of the zero gradient of a bias
  before BatchNorm into lr-sized steps, so no two reduction orders agree.
  The momentum trace is the optimizer state sharded like the parameters.
  """
  tx = optax.sgd(0.2, momentum=0.9)
  graphdef, state = training.init_train_state(
      tiny_models.tiny_multiview_model(), tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  return state, training.make_train_step(graphdef, tx, loss_fn)


def _batch(t):
  return {"image": jax.random.uniform(jax.random.key(100 + t), (16, 8, 4, 1))}


def _close(a, b, tol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol,
                               atol=tol)


@pytest.mark.parametrize("shape,names", [((8,), ("data",)),
                                         ((4, 2), ("data", "model"))])
def test_fsdp_step_equals_replicated(shape, names):
  state, step = _setup()
  mesh = sharding.make_mesh(shape=shape, axis_names=names)
  fsdp = sharding.state_shardings(state, mesh, params="fsdp", min_size=64)
  axis = sharding.fsdp_axis(mesh)
  assert axis == names[-1]
  assert fsdp.params["g1"]["l1"]["kernel"].value.spec == P(None, axis)
  assert fsdp.params["g1"]["l1"]["bias"].value.spec == P()   # 32 < min_size
  rep_step = sharding.shard_train_step(step, mesh)
  fsdp_step = sharding.shard_train_step(step, mesh, state_sharding=fsdp)
  s_rep, s_fsdp = sharding.replicate(state, mesh), sharding.place(state, fsdp)
  for t in range(4):
    b = sharding.shard_batch(_batch(t), mesh)
    s_rep, m_rep = rep_step(s_rep, b, jax.random.key(t))
    s_fsdp, m_fsdp = fsdp_step(s_fsdp, b, jax.random.key(t))
    np.testing.assert_allclose(m_fsdp["loss"], m_rep["loss"], rtol=1e-5,
                               atol=1e-5)
  _close(s_fsdp.params, s_rep.params)
  _close(s_fsdp.opt_state, s_rep.opt_state)
  shard = (16, 32 // mesh.shape[axis])
  kernel = s_fsdp.params["g1"]["l1"]["kernel"][...]
  trace = s_fsdp.opt_state[0].trace["g1"]["l1"]["kernel"][...]
  assert kernel.addressable_shards[0].data.shape == shard
  assert trace.addressable_shards[0].data.shape == shard
  # Bytes per device: the [16, 32], [32, 8] and [8, 8] kernels (+ traces)
  # shrink by the axis size; everything else stays.
  full = sharding.bytes_per_device(state, sharding.state_shardings(state, mesh))
  part = sharding.bytes_per_device(state, fsdp)
  split = 2 * 4 * (2 * 16 * 32 + 2 * 32 * 8 + 8 * 8)  # params + trace, f32
  assert full - part == split - split // mesh.shape[axis]


def test_bad_param_sharding_raises():
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match="'fsdp'"):
    sharding.state_shardings(_setup()[0], mesh, params="zero")
  with pytest.raises(ValueError, match="divide"):
    sharding.make_mesh(shape=(-1, 3), axis_names=("data", "model"))


def test_sharded_checkpoint_resumes_on_8_then_4_then_1_devices(tmp_path):
  """Save on an 8-device FSDP mesh, restore onto 4 devices, then onto 1."""
  state0, step = _setup()
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  state, losses = None, []
  for n, start, stop in ((8, 0, 2), (4, 2, 4), (1, 4, 6)):
    mesh = sharding.make_mesh(devices=jax.devices()[:n])
    fsdp = sharding.state_shardings(state0, mesh, params="fsdp", min_size=64)
    if start == 0:
      state = sharding.place(state0, fsdp)
    else:
      abstract = jax.tree.map(
          lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
          state0, fsdp)
      restored, state, it = ckpt.restore_latest(abstract)
      assert (restored, it) == (start, {"next": start})
      kernel = state.params["g1"]["l1"]["kernel"][...]
      assert len(kernel.sharding.device_set) == n
      assert kernel.addressable_shards[0].data.shape == (16, 32 // n)
    sstep = sharding.shard_train_step(step, mesh, state_sharding=fsdp)
    for t in range(start, stop):
      state, m = sstep(state, sharding.shard_batch(_batch(t), mesh),
                       jax.random.key(t))
      losses.append(float(m["loss"]))
    ckpt.save(stop, state, {"next": stop})
  ckpt.close()
  # Reference: 6 uninterrupted steps on one device.
  ref_state, ref = state0, []
  jstep = jax.jit(step)
  for t in range(6):
    ref_state, m = jstep(ref_state, _batch(t), jax.random.key(t))
    ref.append(float(m["loss"]))
  np.testing.assert_allclose(losses, ref, rtol=1e-5, atol=1e-5)
  _close(state.params, ref_state.params)
  _close(state.opt_state, ref_state.opt_state)
