"""Tests of mi_jax.critics against float64 NumPy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax import critics

B, C, DA, DB = 5, 7, 3, 4


def inputs(seed=0, db=DB):
  r = np.random.RandomState(seed)
  return (r.normal(size=(B, DA)).astype(np.float32),
          r.normal(size=(C, db)).astype(np.float32))


def np_mlp(layers, x, act=lambda h: np.maximum(h, 0)):
  for i, layer in enumerate(layers):
    x = x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(
        layer.bias[...], np.float64)
    if i < len(layers) - 1:
      x = act(x)
  return x


def jit_call(critic, za, zb):
  graphdef, state = nnx.split(critic)
  return jax.jit(lambda s, a, b: nnx.merge(graphdef, s)(a, b))(state, za, zb)


def test_bilinear_matches_numpy():
  za, zb = inputs()
  critic = critics.make("bilinear", DA, DB, rngs=nnx.Rngs(0))
  got = jit_call(critic, za, zb)
  w = np.asarray(critic.kernel[...], np.float64)
  assert got.shape == (B, C) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, za.astype(np.float64) @ w @ zb.T, rtol=1e-5,
                             atol=1e-6)


def test_separable_matches_numpy_and_is_configurable():
  za, zb = inputs(1)
  critic = critics.make("separable", DA, DB, hidden=(6, 5), out=4,
                        activation="tanh", rngs=nnx.Rngs(1))
  assert len(critic.g.layers) == 3
  got = jit_call(critic, za, zb)
  g = np_mlp(critic.g.layers, za.astype(np.float64), np.tanh)
  h = np_mlp(critic.h.layers, zb.astype(np.float64), np.tanh)
  np.testing.assert_allclose(got, g @ h.T, rtol=1e-5, atol=1e-6)
  assert critic.g.layers[-1].kernel.shape == (5, 4)
  assert critics._hidden(8, 2) == (8, 8)   # hidden=8, layers=2


@pytest.mark.parametrize("cosine", [False, True])
def test_inner_product_matches_numpy(cosine):
  za, zb = inputs(2, db=DA)
  critic = critics.make("inner_product", DA, DA, cosine=cosine,
                        temperature=0.5, rngs=nnx.Rngs(0))
  a, b = za.astype(np.float64), zb.astype(np.float64)
  if cosine:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
  np.testing.assert_allclose(jit_call(critic, za, zb), a @ b.T / 0.5,
                             rtol=1e-5, atol=1e-6)


def test_concat_mlp_pairs_equal_mlp_on_concatenation():
  za, zb = inputs(3)
  critic = critics.make("concat", DA, DB, hidden=(6, 5), rngs=nnx.Rngs(3))
  got = jit_call(critic, za, zb)
  assert got.shape == (B, C) and got.dtype == jnp.float32
  pairs = np.concatenate([np.repeat(za, C, 0), np.tile(zb, (B, 1))], axis=1)
  want = np_mlp(critic.mlp.layers, pairs.astype(np.float64)).reshape(B, C)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Pair (i, j) is the MLP on concat(a_i, b_j), one pair at a time.
  graphdef, state = nnx.split(critic.mlp)
  one = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(
      state, np.concatenate([za[2], zb[5]])[None])[0, 0]
  np.testing.assert_allclose(got[2, 5], one, rtol=1e-5, atol=1e-6)


def test_gradients_flow_and_bfloat16_inputs_give_float32():
  """The gradient of sum(scores^2) w.r.t. every critic's parameters matches a
  central finite difference along a random direction (a missing or blocked
  gradient would not); bfloat16 inputs give float32 scores."""
  za, zb = inputs(4)
  for name in ("bilinear", "separable", "concat"):
    critic = critics.make(name, DA, DB, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(critic)

    def loss(p, a=za, b=zb):
      return jnp.sum(nnx.merge(graphdef, p)(a, b) ** 2)

    @jax.jit
    def run(p, a, b):
      out16 = nnx.merge(graphdef, p)(a.astype(jnp.bfloat16),
                                     b.astype(jnp.bfloat16))
      return jax.grad(loss)(p), out16

    grads, out16 = run(params, za, zb)
    leaves, treedef = jax.tree.flatten(params)
    r = np.random.RandomState(1)
    direction = jax.tree.unflatten(treedef, [
        r.normal(size=np.shape(x)).astype(np.float32) for x in leaves])
    eps = 1e-2
    shifted = lambda sign: jax.tree.map(lambda p, d: p + sign * eps * d,
                                        params, direction)
    numeric = (float(jax.jit(loss)(shifted(1))) -
               float(jax.jit(loss)(shifted(-1)))) / (2 * eps)
    analytic = sum(float(jnp.sum(g * d)) for g, d in zip(
        jax.tree.leaves(grads), jax.tree.leaves(direction)))
    assert abs(analytic) > 1e-3, name
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, err_msg=name)
    assert out16.dtype == jnp.float32, name


def test_make_errors():
  with pytest.raises(ValueError, match="bilinear, separable, inner_product"):
    critics.make("billinear", 2, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="dim_a == dim_b"):
    critics.make("inner_product", 2, 3, rngs=nnx.Rngs(0))
  critic = critics.make("bilinear", DA, DB, rngs=nnx.Rngs(0))
  za, zb = inputs()
  with pytest.raises(ValueError, match="widths"):
    critic(zb, za)
  assert isinstance(critics.make("concat_mlp", 2, 2, hidden_dims=(4,),
                                 rngs=nnx.Rngs(0)), critics.ConcatMLP)
  assert critics.NAMES == ("bilinear", "separable", "inner_product", "concat",
                           "quadratic")
  with pytest.raises(ValueError, match="rank"):
    critics.make("quadratic", 2, 2, rank=0, rngs=nnx.Rngs(0))


def _random_quadratic(rank, seed=0):
  critic = critics.make("quadratic", DA, DB, rank=rank, rngs=nnx.Rngs(seed))
  critic.coef[...] = jnp.asarray(
      np.random.RandomState(seed + 1).normal(size=(5, rank)), jnp.float32)
  return critic


def test_quadratic_matches_a_hand_computation():
  """f(a, b) = sum_k w_k u_k v_k + d_k u_k^2 + c_k v_k^2 + e_k u_k + g_k v_k,
  u = a P, v = b Q, in float64 NumPy; factors give the same scores."""
  za, zb = inputs(5)
  critic = _random_quadratic(2)
  p = np.asarray(critic.proj_a[...], np.float64)
  q = np.asarray(critic.proj_b[...], np.float64)
  w, d, c, e, g = np.asarray(critic.coef[...], np.float64)
  want = np.empty((B, C))
  for i in range(B):
    for j in range(C):
      u, v = za[i].astype(np.float64) @ p, zb[j].astype(np.float64) @ q
      want[i, j] = np.sum(w * u * v + d * u**2 + c * v**2 + e * u + g * v)
  got = jit_call(critic, jnp.asarray(za), jnp.asarray(zb))
  assert got.shape == (B, C) and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
  ua, ub = critic.factors(jnp.asarray(za), jnp.asarray(zb))
  np.testing.assert_allclose(np.asarray(ua @ ub.T), want, rtol=1e-4,
                             atol=1e-4)
  # Coefficients start at zero: every score 0.
  fresh = critics.make("quadratic", DA, DB, rngs=nnx.Rngs(0))
  assert fresh.rank == min(DA, DB)
  assert np.all(np.asarray(fresh(jnp.asarray(za), jnp.asarray(zb))) == 0)


def test_quadratic_represents_a_gaussian_log_density_ratio():
  """With P, Q the canonical directions and w = rho / (1 - rho^2),
  c = d = -rho^2 / (2 (1 - rho^2)), the scores equal log p(a, b) / p(a)p(b)
  of a Gaussian pair up to its constant -1/2 log det cov (float64)."""
  rho = np.array([0.8, -0.5])
  cov = np.eye(DA + DB)
  for k, r in enumerate(rho):  # a_k ~ b_{k+1}
    cov[k, DA + k + 1] = cov[DA + k + 1, k] = r
  critic = critics.make("quadratic", DA, DB, rank=2, rngs=nnx.Rngs(0))
  p, q = np.zeros((DA, 2)), np.zeros((DB, 2))
  p[[0, 1], [0, 1]] = 1.0
  q[[1, 2], [0, 1]] = 1.0
  sq = -rho**2 / (2 * (1 - rho**2))
  critic.proj_a[...] = jnp.asarray(p, jnp.float32)
  critic.proj_b[...] = jnp.asarray(q, jnp.float32)
  critic.coef[...] = jnp.asarray(np.stack(
      [rho / (1 - rho**2), sq, sq, 0 * rho, 0 * rho]), jnp.float32)
  za, zb = inputs(6)
  got = np.asarray(jit_call(critic, jnp.asarray(za), jnp.asarray(zb)),
                   np.float64)
  prec = np.linalg.inv(cov)
  z = np.concatenate([np.repeat(za, C, 0), np.tile(zb, (B, 1))], 1)
  log_ratio = (-0.5 * np.einsum("nd,de,ne->n", z, prec - np.eye(DA + DB), z)
               ).reshape(B, C)  # marginals are N(0, I): their terms cancel
  # log p(a, b) / p(a) p(b) = -1/2 log det cov - 1/2 z^T (cov^-1 - I) z:
  # the scores are the second term exactly.
  np.testing.assert_allclose(got, log_ratio, atol=1e-4)
  assert np.std(log_ratio) > 0.1  # not a trivial comparison
