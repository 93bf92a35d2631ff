"""On-device data gathered inside the compiled multi-step, and the background prefetcher."""

import jax
import numpy as np
import optax

from mi_jax import training, views
from mi_jax.data.iterator import BatchIterator
from mi_jax.objectives import multiview
from mi_jax.training import feed, sharding

import tiny_models  # tests/tiny_models.py


def _data(n=40):
  r = np.random.RandomState(0)
  return {"image": r.uniform(size=(n, 8, 4, 1)).astype(np.float32),
          "label": (np.arange(n) % 10).astype(np.int32)}


def _setup():
  tx = optax.sgd(0.2, momentum=0.9)
  graphdef, state = training.init_train_state(
      tiny_models.tiny_multiview_model(), tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  return state, training.make_train_step(graphdef, tx, loss_fn)


def test_device_gather_multi_step_equals_host_batches_and_resumes():
  """2 calls x 3 steps on the mesh, gathering on device == 6 host-fed steps.

  B = 16 of 40 examples: 2 batches per epoch, so the run crosses epochs.
  The second call starts from a fresh DeviceData set to the saved position.
  """
  data, (state0, step) = _data(), _setup()
  mesh = sharding.make_mesh()
  # Not donated: state0 is reused by the reference below.
  multi = feed.shard_gather_multi_step(step, 3, mesh, donate_state=False)
  dev = feed.DeviceData(data, BatchIterator(data, 16, seed=3, shard_count=1,
                                            shard_index=0),
                        sharding.replicated(mesh))
  state = sharding.replicate(state0, mesh)
  state, m1 = multi(state, dev.arrays, dev.next_indices(3), jax.random.key(0))
  saved = dev.state()
  assert saved == {"seed": 3, "epoch": 1, "batch": 1}
  resumed = feed.DeviceData(data, BatchIterator(data, 16, seed=3,
                                                shard_count=1, shard_index=0),
                            sharding.replicated(mesh))
  resumed.iterator.set_state(saved)
  state, m2 = multi(state, resumed.arrays, resumed.next_indices(3),
                    jax.random.key(1))
  # Reference: the host iterator's batches, one jitted step at a time, with
  # the keys make_gather_multi_step derives.
  host, ref_state, ref = BatchIterator(data, 16, seed=3), state0, []
  jstep = jax.jit(step)
  for call in range(2):
    for k in jax.random.split(jax.random.key(call), 3):
      ref_state, m = jstep(ref_state, next(host), k)
      ref.append(float(m["loss"]))
  np.testing.assert_allclose(np.concatenate([m1["loss"], m2["loss"]]), ref,
                             rtol=1e-5, atol=1e-5)
  for x, y in zip(jax.tree.leaves(state.params),
                  jax.tree.leaves(ref_state.params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
  assert resumed.state() == host.get_state()


def test_prefetcher_same_batches_and_exact_state():
  data = _data(24)
  it = BatchIterator(data, 8, seed=1)
  pre = feed.Prefetcher(BatchIterator(data, 8, seed=1), jax.device_put,
                        depth=2)
  for _ in range(4):                       # crosses the epoch boundary
    got = next(pre)
    want = next(it)
    np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
    assert pre.state() == it.get_state()   # not the read-ahead position
  pre.close()
  finite = feed.Prefetcher(BatchIterator(data, 8, seed=1, num_epochs=1),
                           jax.device_put)
  assert len(list(finite)) == 3


def test_device_data_rejects_host_sharded_iterator():
  data = _data(16)
  try:
    feed.DeviceData(data, BatchIterator(data, 8, seed=0, shard_index=0,
                                        shard_count=2))
  except ValueError as e:
    assert "shard_count=1" in str(e)
  else:
    raise AssertionError("expected a ValueError")
