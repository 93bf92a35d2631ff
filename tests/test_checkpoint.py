"""Tests for mi_jax.training.checkpoint: round trip, keep-last-N, empty dir."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax.training import checkpoint


def _state(seed):
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(seed))
  params = nnx.state(model, nnx.Param)
  opt_state = optax.adam(1e-3).init(params)
  return {"step": jnp.asarray(seed, jnp.int32), "params": params,
          "opt_state": opt_state}


def test_round_trip_bitwise(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
  state = _state(1)
  it_state = {"epoch": np.int64(2), "position": 17, "seed": 0}
  ckpt.save(5, state, it_state)
  ckpt.wait()
  other = _state(2)
  step, restored, restored_it = ckpt.restore_latest(checkpoint.abstract_like(other))
  ckpt.close()
  assert step == 5
  assert restored_it == {"epoch": 2, "position": 17, "seed": 0}
  flat_a = jax.tree.leaves(state)
  flat_b = jax.tree.leaves(restored)
  assert len(flat_a) == len(flat_b)
  for a, b in zip(flat_a, flat_b):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  assert jax.tree.structure(restored) == jax.tree.structure(state)


def test_keeps_last_n_and_empty(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2,
                                 async_save=False)
  assert ckpt.restore_latest(checkpoint.abstract_like(_state(0))) == (
      None, None, None)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), {"position": step})
  assert not ckpt.save(3, _state(3), {"position": 3})  # already saved: no-op
  assert ckpt.all_steps() == [2, 3]
  restored, it = ckpt.restore(2, checkpoint.abstract_like(_state(0)))
  assert it == {"position": 2}
  assert int(restored["step"]) == 2
  ckpt.close()
