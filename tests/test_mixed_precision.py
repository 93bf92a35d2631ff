"""bfloat16 compute with float32 bounds and master weights, for every objective.

A few SGD steps with `make_train_step(..., compute_dtype=jnp.bfloat16)` from
the same initial state as float32: the state stays float32, every metric is
finite and float32, the bf16 run really computed in bf16 (its losses differ
from float32's) and stays close to it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import critics, encoders, training, views
from mi_jax.objectives import dim, multiview


def _multiview(bound, critic):
  rngs = nnx.Rngs(0)
  model = multiview.MultiviewModel(
      encoders.MLP(32, (32,), 16, rngs=rngs),
      encoders.MLP(32, (32,), 16, rngs=rngs),
      critics.make(critic, 16, 16, rngs=rngs))
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound=bound)
  return model, loss_fn, {"image": jax.random.uniform(
      jax.random.key(1), (32, 8, 8, 1))}


def _dim(estimator):
  enc = encoders.make("dim_conv", in_channels=1, image_size=16,
                      channels=(8, 16, 16), fc_dim=32, code_dim=6,
                      rngs=nnx.Rngs(0))
  model = dim.make_dim_model(
      enc, rngs=nnx.Rngs(1), local_shape=(4, 4, 16), alpha=0.5, beta=1.0,
      gamma=0.1, local_embed_dim=8, local_hidden_dim=8,
      global_conv_channels=(8, 4), global_hidden_dims=(8,),
      prior_hidden_dims=(16, 8))
  loss_fn = dim.make_dim_loss(estimator=estimator, alpha=0.5, beta=1.0,
                              gamma=0.1)
  return model, loss_fn, {"image": jax.random.uniform(
      jax.random.key(1), (16, 16, 16, 1))}


@pytest.mark.parametrize("objective", [
    ("multiview", "infonce", "bilinear"), ("multiview", "nwj", "separable"),
    ("multiview", "jsd", "concat"),
    pytest.param(("dim", "jsd"), marks=pytest.mark.slow)],  # dim: ~70 s on 2 cores
    ids=lambda o: "-".join(o))
def test_bfloat16_steps_close_to_float32(objective):
  model, loss_fn, batch = (_multiview(*objective[1:])
                           if objective[0] == "multiview"
                           else _dim(*objective[1:]))
  tx = optax.sgd(0.05)
  graphdef, state0 = training.init_train_state(model, tx)

  def run(dtype):
    step = jax.jit(training.make_train_step(graphdef, tx, loss_fn,
                                            compute_dtype=dtype))
    state, history = state0, []
    for t in range(3):
      state, metrics = step(state, batch, jax.random.key(t))
      history.append(metrics)
    return state, history

  s16, h16 = run(jnp.bfloat16)
  s32, h32 = run(None)
  for x16, x32 in zip(jax.tree.leaves(s16), jax.tree.leaves(s32)):
    assert x16.dtype == x32.dtype          # float32 master weights / stats
  for m16, m32 in zip(h16, h32):
    assert bool(m16["finite"])
    for k, v in m32.items():
      if jnp.issubdtype(v.dtype, jnp.floating):
        assert m16[k].dtype == jnp.float32, k
        assert np.isfinite(float(m16[k])), k
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=0.03,
                               atol=0.03)
  assert any(float(a["loss"]) != float(b["loss"]) for a, b in zip(h16, h32))
  for x16, x32 in zip(jax.tree.leaves(s16.params), jax.tree.leaves(s32.params)):
    np.testing.assert_allclose(x16, x32, atol=0.02)
