"""Gradient-safe numerics of mi_jax.bounds: finite values AND bounded gradients.

A bound whose value is capped but whose gradient is not (the old
`saturating_exp`: value e^80, gradient passed through uncapped) gives
gradients of ~1e34 on heavy-tailed data; Adam's second moment g^2 then
overflows float32 and the parameters freeze or turn NaN for good. These tests
fail on that implementation.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mi_jax import bounds
from mi_jax.bounds import _common

# Largest gradient entry any bound may produce for finite scores: e^20 (the
# cap of capped_exp) with room for the 1/B^2 averaging factors.
GRAD_MAX = float(np.exp(20.0))


def test_capped_exp_is_exp_below_the_cap_and_bounded_above():
  x = jnp.asarray([-50.0, -1.0, 0.0, 3.0, 19.5, 20.0, 25.0, 1e4, 3e38])
  value = jax.jit(_common.capped_exp)(x)
  grad = jax.jit(jax.vmap(jax.grad(_common.capped_exp)))(x)
  np.testing.assert_allclose(value[:5], np.exp(np.float64(x[:5])), rtol=1e-6)
  np.testing.assert_allclose(grad[:5], np.exp(np.float64(x[:5])), rtol=1e-6)
  cap = np.exp(20.0)
  # Above the cap: e^20 (1 + log1p(x - 20)), derivative e^20 / (1 + x - 20).
  np.testing.assert_allclose(value[6], cap * (1 + np.log1p(5.0)), rtol=1e-6)
  np.testing.assert_allclose(grad[6], cap / 6.0, rtol=1e-6)
  np.testing.assert_allclose(value[8], cap * (1 + np.log1p(3e38)), rtol=1e-5)
  assert np.all(np.diff(np.asarray(value)) > 0)  # monotone
  assert np.all(np.asarray(grad) <= cap * 1.0001)


def _value_and_grads(dtype, s):
  def everything(x):
    out = {}
    for n in bounds.NAMES:
      fn = bounds.get(n)
      f = (lambda y, fn=fn: fn(y)[0]) if n == "mine" else fn
      out[n] = jax.value_and_grad(lambda y, f=f: f(y).astype(jnp.float32))(x)
    out["mine_ema"] = jax.value_and_grad(
        lambda y: bounds.mine(y, ema=jnp.float32(-3.0))[0])(x)
    out["tuba_a"] = jax.value_and_grad(
        lambda y: bounds.tuba(y, log_baseline=-jnp.ones(6) * 1e3))(x)
    return out
  return jax.jit(everything)(jnp.asarray(s, dtype))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("scale", [1e2, 1e30])
def test_values_finite_and_gradients_bounded_for_extreme_scores(dtype, scale):
  s = np.random.RandomState(3).choice([-scale, scale, 0.0, 1.0], (6, 6))
  for name, (value, grad) in _value_and_grads(dtype, s).items():
    grad = np.asarray(grad, np.float64)
    assert np.isfinite(float(value)), (name, scale)
    assert np.all(np.isfinite(grad)), (name, scale)
    assert np.max(np.abs(grad)) <= GRAD_MAX, (name, scale, np.abs(grad).max())


def _heavy_tailed_pairs(n, seed):
  """Cubed Student-t (df 1.5) pairs: scores of a bilinear critic reach ~1e9."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((n, 4))
  z[:, 2:] = 0.8 * z[:, :2] + 0.6 * z[:, 2:]
  z /= np.sqrt(rng.chisquare(1.5, (n, 1)) / 1.5)
  return jnp.asarray(z[:, :2] ** 3, jnp.float32), jnp.asarray(
      z[:, 2:] ** 3, jnp.float32)


def _train(name, x_NxD, y_NxD, steps, batch):
  """Plain Adam (no clipping, no guard) on a bilinear critic; returns
  (loss per step [S], params per step [S, 2, 2])."""
  tx = optax.adam(1e-2)
  fn = bounds.get(name)

  def loss(w, ema, idx):
    s = x_NxD[idx] @ w @ y_NxD[idx].T
    if name == "mine":
      value, ema = fn(s, ema=ema)
      return -value, ema
    return -fn(s), ema

  def step(carry, idx):
    w, opt, ema = carry
    (l, ema), g = jax.value_and_grad(loss, has_aux=True)(w, ema, idx)
    upd, opt = tx.update(g, opt, w)
    w = optax.apply_updates(w, upd)
    return (w, opt, ema), (l, w)

  w0 = jnp.full((2, 2), 0.1, jnp.float32)
  idx = jax.random.randint(jax.random.key(0), (steps, batch), 0,
                           x_NxD.shape[0])
  carry = (w0, tx.init(w0), jnp.float32(-jnp.inf))
  _, (losses, ws) = jax.jit(functools.partial(jax.lax.scan, step))(carry, idx)
  return np.asarray(losses), np.asarray(ws)


@pytest.mark.parametrize("name", ["nwj", "tuba", "interpolated", "mine"])
def test_adam_on_heavy_tailed_inputs_stays_finite_and_keeps_learning(name):
  x, y = _heavy_tailed_pairs(2048, seed=0)
  losses, ws = _train(name, x, y, steps=1000, batch=32)
  assert np.all(np.isfinite(losses)), (name, np.flatnonzero(
      ~np.isfinite(losses))[:3])
  assert np.all(np.isfinite(ws)), name
  # Not frozen: an overflowed second moment (v = inf) makes every later
  # update exactly 0; here the parameters still move over the last steps.
  assert np.abs(ws[-1] - ws[-100]).max() > 1e-6, name
