"""`map_over_seeds` (lax.map over seeds in one program) == `vmap_over_seeds`."""

import pytest
import jax
import numpy as np
import optax

from mi_jax import training, views
from mi_jax.objectives import multiview

import tiny_models  # tests/tiny_models.py


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_map_over_seeds_equals_vmap():
  tx = optax.sgd(0.1)
  keys = jax.random.split(jax.random.key(0), 3)
  graphdef, states = training.init_train_states(
      lambda k: tiny_models.tiny_multiview_model(seed=k), tx, keys)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  step = training.make_train_step(graphdef, tx, loss_fn)
  batch = {"image": jax.random.uniform(jax.random.key(1), (3, 8, 8, 4, 1))}
  v_state, v_m = jax.jit(training.vmap_over_seeds(step, batch_axis=0))(
      states, batch, keys)
  for k in (1, 2):
    m_state, m_m = jax.jit(training.map_over_seeds(
        step, batch_axis=0, seeds_in_parallel=k))(states, batch, keys)
    np.testing.assert_allclose(m_m["loss"], v_m["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(m_state), jax.tree.leaves(v_state)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Seeds differ (distinct losses), so equality is not trivially shared.
  assert len(set(np.round(np.asarray(v_m["loss"]), 6))) == 3
