"""The device feed's one compiled program for every call length (`variable_length`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import bounds, critics, data as data_lib, encoders, training, views
from mi_jax.objectives import multiview
from mi_jax.training import feed

_B, _N = 32, 96


def _diagonal_infonce(scores_BxB):
  """mean_i [s_ii - logsumexp_j s_ij] + log B: a bound XLA fuses differently
  in a loop body and in a single unrolled step (so the last bits of a run
  depend on how its steps are split into calls unless every call runs the
  same program)."""
  return jnp.mean(jnp.diag(scores_BxB) - jax.nn.logsumexp(scores_BxB, axis=1)
                  ) + jnp.log(scores_BxB.shape[0])


def _model(seed):
  rngs = nnx.Rngs(seed)
  return multiview.MultiviewModel(
      encoders.MLP(392, (24,), 8, rngs=rngs),
      encoders.MLP(392, (24,), 8, rngs=rngs),
      critics.Bilinear(8, 8, rngs=rngs))


def _setup(bound):
  tx = optax.adam(1e-2)
  graphdef, _ = training.init_train_state(_model(0), tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound=bound)
  step = training.make_train_step(graphdef, tx, loss_fn)
  images = jax.random.uniform(jax.random.key(3), (_N, 28, 28, 1))
  return tx, step, {"image": np.asarray(images)}


def _state(tx):
  return training.init_train_state(_model(1), tx)[1]


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_variable_length_runs_n_steps_and_zero_pads():
  tx, step, arrays = _setup(bounds.infonce)
  idx = np.random.RandomState(0).randint(0, _N, (5, _B)).astype(np.int32)
  key = jax.random.key(0)
  var = jax.jit(feed.make_gather_multi_step(step, 5, split_key=False,
                                            variable_length=True))
  for n in (1, 3, 5):
    fixed = jax.jit(feed.make_gather_multi_step(step, n, split_key=False))
    s_fixed, m_fixed = fixed(_state(tx), arrays, idx[:n], key)
    s_var, m_var = var(_state(tx), arrays, idx, key, np.int32(n))
    assert int(s_var.step) == n
    for a, b in zip(_leaves(s_fixed), _leaves(s_var), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in m_fixed:
      assert m_var[k].shape == (5, *m_fixed[k].shape[1:])
      np.testing.assert_allclose(m_var[k][:n], m_fixed[k], rtol=1e-5,
                                 atol=1e-6, err_msg=k)
      assert not np.any(np.asarray(m_var[k][n:])), k  # rows not run: zeros


def _compiled(step):
  # Cached like the engine's `run.gather_steps`: one compile per (T, mode).
  @functools.lru_cache(maxsize=None)
  def multi_step(t, variable_length=False):
    return jax.jit(feed.make_gather_multi_step(
        step, t, split_key=False, variable_length=variable_length),
                   donate_argnums=0)
  return multi_step


def _feed_run(multi_step, tx, arrays, chunks, max_steps):
  it = data_lib.BatchIterator(arrays, _B, seed=0, shard_index=0, shard_count=1)
  device_feed = feed.DeviceFeed(feed.DeviceData(arrays, it), multi_step,
                                max_steps=max_steps)
  state, key, losses = _state(tx), jax.random.key(0), []
  for n in chunks:
    state, metrics, finite = device_feed.run(state, n, key)
    assert metrics["loss"].shape == (n,) and finite.shape == (n,)
    losses.extend(np.asarray(metrics["loss"]).tolist())
  return state, losses, device_feed.state()


@pytest.mark.parametrize("bound", [bounds.infonce, _diagonal_infonce],
                         ids=["infonce", "diagonal_infonce"])
def test_device_feed_numbers_do_not_depend_on_call_lengths(bound):
  # With max_steps every call runs the same compiled loop body, so splitting
  # 12 steps as 4+2+2+4 (the uninterrupted run), 3+1+2+3+3 (a stop and a
  # resume) or 12 single steps gives bitwise the same parameters and losses.
  tx, step, arrays = _setup(bound)
  multi_step = _compiled(step)
  ref_state, ref_losses, ref_pos = _feed_run(multi_step, tx, arrays,
                                             [4, 2, 2, 4], 10)
  for chunks in ([3, 1, 2, 3, 3], [1] * 12, [10, 2]):
    state, losses, pos = _feed_run(multi_step, tx, arrays, chunks, 10)
    assert losses == ref_losses, chunks
    assert pos == ref_pos
    for a, b in zip(_leaves(ref_state), _leaves(state), strict=True):
      np.testing.assert_array_equal(a, b)


def test_device_feed_max_steps_checks():
  tx, step, arrays = _setup(bounds.infonce)
  with pytest.raises(ValueError, match="split_key"):
    feed.make_gather_multi_step(step, 4, split_key=True, variable_length=True)
  it = data_lib.BatchIterator(arrays, _B, seed=0, shard_index=0, shard_count=1)
  device_feed = feed.DeviceFeed(feed.DeviceData(arrays, it), _compiled(step),
                                max_steps=4)
  with pytest.raises(ValueError, match="at most 4"):
    device_feed.run(_state(tx), 5, jax.random.key(0))
