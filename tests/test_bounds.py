"""Tests of mi_jax.bounds (dense path) against float64 NumPy references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp, softplus

from mi_jax import bounds

# ---------------------------------------------------------------- references


def _pos(s, mask):
  return np.eye(s.shape[0], dtype=bool) if mask is None else np.asarray(mask)


def ref_infonce(s, mask=None):
  pos = _pos(s, mask)
  terms = []
  for i, j in zip(*np.nonzero(pos)):
    cand = ~pos[i]
    cand[j] = True
    terms.append(s[i, j] - logsumexp(s[i, cand]) + np.log(cand.sum()))
  return np.mean(terms)


def ref_tuba(s, mask=None, log_baseline=0.0):
  pos = _pos(s, mask)
  a = np.broadcast_to(np.asarray(log_baseline, np.float64).reshape(-1, 1)
                      if np.ndim(log_baseline) else log_baseline, s.shape)
  return 1 + np.mean((s - a)[pos]) - np.mean(np.exp((s - a)[~pos]))


def ref_nwj(s, mask=None):
  pos = _pos(s, mask)
  return np.mean(s[pos]) - np.exp(-1) * np.mean(np.exp(s[~pos]))


def ref_dv(s, mask=None):
  pos = _pos(s, mask)
  return np.mean(s[pos]) - np.log(np.mean(np.exp(s[~pos])))


def ref_jsd(s, mask=None):
  pos = _pos(s, mask)
  return np.mean(-softplus(-s[pos])) - np.mean(softplus(s[~pos]))


def ref_smile(s, mask=None, clip=5.0):
  pos = _pos(s, mask)
  neg = s[~pos] if clip is None else np.clip(s[~pos], -clip, clip)
  return np.mean(s[pos]) - np.log(np.mean(np.exp(neg)))


def ref_interpolated(s, mask=None, alpha=0.5, log_baseline=0.0):
  b = s.shape[0]
  a = np.broadcast_to(log_baseline, (b,))
  base = np.zeros((b, b))
  for i in range(b):
    for j in range(b):
      loo = np.log(np.mean(np.exp(np.delete(s[i], j))))
      base[i, j] = np.log(alpha * np.exp(loo) + (1 - alpha) * np.exp(a[i]))
  off = ~np.eye(b, dtype=bool)
  joint = np.mean((np.diag(s)[:, None] - base)[off])
  marg = np.mean(np.exp(s - np.diag(base)[:, None])[off])
  return 1 + joint - marg


def ref_mine_value(s, mask=None):
  return ref_dv(s, mask)


REFS = {
    "infonce": ref_infonce, "nwj": ref_nwj, "tuba": ref_tuba, "dv": ref_dv,
    "mine": ref_mine_value, "jsd": ref_jsd, "interpolated": ref_interpolated,
    "smile": ref_smile,
}
GENERAL_MASK = ["infonce", "nwj", "tuba", "dv", "mine", "jsd", "smile"]


def scalar_fn(name, **kw):
  """The bound as scores -> scalar (MINE's value; SMILE with its own grad)."""
  fn = bounds.get(name)
  if name == "mine":
    return lambda s, m=None: fn(s, m, **kw)[0]
  if name == "smile":
    kw = {"js_gradient": False, **kw}
  return lambda s, m=None: fn(s, m, **kw)


def fd_grad(f, s, h=1e-6):
  """Central finite-difference gradient of a float64 NumPy function."""
  g = np.zeros_like(s)
  for idx in np.ndindex(s.shape):
    e = np.zeros_like(s)
    e[idx] = h
    g[idx] = (f(s + e) - f(s - e)) / (2 * h)
  return g


def rand_scores(shape, seed=0, scale=2.0):
  return np.random.RandomState(seed).normal(size=shape).astype(np.float32) * scale


def dim_local_mask(n_img=3, n_loc=4):
  """Rows = (image, location), columns = images; one positive per row."""
  return np.repeat(np.eye(n_img, dtype=bool), n_loc, axis=0)


def multi_pos_mask(seed=1):
  m = np.random.RandomState(seed).rand(5, 7) < 0.3
  m[np.arange(5), np.arange(5)] = True   # every row has a positive
  m[:, 6] = False                        # and a negative
  return m


MASKS = {"diag": None, "dim_local": dim_local_mask(), "multi": multi_pos_mask()}

# ---------------------------------------------------------------- values
# Each test jits all bounds in one program (one compile) to keep tests fast.


def names_for(mask):
  return bounds.NAMES if mask is None else GENERAL_MASK


def all_values(s, mask):
  return {n: scalar_fn(n)(s, mask) for n in names_for(mask)}


def all_grads(s, mask):
  return {n: jax.grad(scalar_fn(n))(s, mask) for n in names_for(mask)}


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_values_match_numpy(mask_name):
  mask = MASKS[mask_name]
  s = rand_scores((7, 7) if mask is None else mask.shape, seed=3)
  got = jax.jit(all_values)(s, mask)
  for name, value in got.items():
    assert value.dtype == jnp.float32 and value.shape == (), name
    np.testing.assert_allclose(value, REFS[name](s.astype(np.float64), mask),
                               rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_grads_match_finite_differences(mask_name):
  mask = MASKS[mask_name]
  s = rand_scores((5, 5) if mask is None else mask.shape, seed=4, scale=1.5)
  got = jax.jit(all_grads)(s, mask)
  for name, grad in got.items():
    ref = fd_grad(lambda x: REFS[name](x, mask), s.astype(np.float64))
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=2e-6, err_msg=name)


def test_infonce_standard_form_and_cap():
  s = rand_scores((8, 8), seed=5)
  want = np.mean(np.diag(s) - logsumexp(s.astype(np.float64), axis=1)) + np.log(8)
  f = jax.jit(bounds.infonce)
  np.testing.assert_allclose(f(s), want, rtol=1e-5)
  perfect = 50.0 * np.eye(8, dtype=np.float32)
  np.testing.assert_allclose(f(perfect), np.log(8), rtol=1e-6)
  assert f(1e4 * perfect) <= np.log(8) + 1e-6


def test_infonce_other_positives_are_excluded_exactly():
  # Row 0 has two positives; the huge one must not enter the other's softmax.
  s = np.zeros((2, 4), np.float32)
  s[0, 1] = 1e4
  mask = np.array([[True, True, False, False], [False, False, True, False]])
  got = float(jax.jit(bounds.infonce)(s, mask))
  # term(0,0) = 0 - log(3) + log(3) = 0, term(0,1) ~ log 3, term(1,2) = 0.
  np.testing.assert_allclose(got, np.log(3) / 3, rtol=1e-6)


def test_tuba_per_row_baseline():
  s = rand_scores((6, 6), seed=6)
  a = np.linspace(-1, 1, 6).astype(np.float32)
  got = jax.jit(functools.partial(bounds.tuba, log_baseline=a))(s)
  np.testing.assert_allclose(got, ref_tuba(s.astype(np.float64), None, a),
                             rtol=1e-5)
  np.testing.assert_allclose(
      jax.jit(functools.partial(bounds.tuba, log_baseline=1.0))(s),
      jax.jit(bounds.nwj)(s), rtol=1e-6)


# ---------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_finite_for_extreme_scores(dtype):
  s = jnp.asarray(np.random.RandomState(7).choice([-1e4, 1e4, 0.0], (6, 6)),
                  dtype)

  def everything(x):
    out = {n: jax.value_and_grad(scalar_fn(n))(x) for n in bounds.NAMES}
    for n in ("jsd", "smile"):   # also their JS training gradients
      out[n + "_js"] = jax.value_and_grad(bounds.get(n))(x)
    return out

  for name, (value, grad) in jax.jit(everything)(s).items():
    assert value.dtype == jnp.float32, name
    assert np.isfinite(value), name
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), name


def test_bfloat16_computed_in_float32():
  s16 = jnp.asarray(rand_scores((6, 6), seed=8)).astype(jnp.bfloat16)
  f = jax.jit(all_values, static_argnums=1)
  got, want = f(s16, None), f(s16.astype(jnp.float32), None)
  for name in bounds.NAMES:
    assert got[name].dtype == jnp.float32, name
    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)


def test_vmap():
  s = rand_scores((3, 5, 5), seed=9)
  got = jax.jit(jax.vmap(lambda x: all_values(x, None)))(s)
  for name in bounds.NAMES:
    want = [REFS[name](x.astype(np.float64)) for x in s]
    np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6,
                               err_msg=name)


# ---------------------------------------------------------------- MINE / JS / SMILE


def test_mine_value_gradient_and_state():
  s = rand_scores((6, 6), seed=10)
  s64 = s.astype(np.float64)
  neg = ~np.eye(6, dtype=bool)
  ema, decay = np.float32(0.3), 0.9

  @jax.jit
  def run(x, e):
    value, new_ema = bounds.mine(x, ema=e, decay=decay)
    grad = jax.grad(lambda y: bounds.mine(y, ema=e, decay=decay)[0])(x)
    dv_grad = jax.grad(bounds.dv)(x)
    first_grad = jax.grad(lambda y: bounds.mine(y)[0])(x)
    return value, new_ema, grad, dv_grad, first_grad

  value, new_ema, grad, dv_grad, g0 = run(s, ema)
  np.testing.assert_allclose(value, ref_dv(s64), rtol=1e-5)
  batch = np.mean(np.exp(s64[neg]))
  m_t = decay * np.exp(ema) + (1 - decay) * batch
  np.testing.assert_allclose(new_ema, np.log(m_t), rtol=1e-5)
  want = np.where(neg, -np.exp(s64) / neg.sum() / m_t, 1.0 / 6)
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)
  # The corrected gradient differs from the plain DV gradient ...
  assert np.max(np.abs(grad - dv_grad)) > 1e-3
  # ... except on the first step (ema=None), where it is the DV gradient.
  np.testing.assert_allclose(g0, dv_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("readout", ["nwj", "dv"])
def test_jsd_readout_value_and_js_gradient(readout):
  s = rand_scores((6, 6), seed=11)
  s64 = s.astype(np.float64)
  f = functools.partial(bounds.jsd, readout=readout)
  value, grad, js_grad = jax.jit(
      lambda x: (f(x), jax.grad(f)(x), jax.grad(bounds.jsd)(x)))(s)
  want = ref_tuba(s64, None, 0.0) if readout == "nwj" else ref_dv(s64)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  np.testing.assert_allclose(grad, js_grad, rtol=1e-6)


def test_smile_value_clip_and_gradient():
  s = rand_scores((6, 6), seed=12, scale=4.0)
  s64 = s.astype(np.float64)
  got, unclipped, grad, js_grad = jax.jit(lambda x: (
      bounds.smile(x, clip=1.0), bounds.smile(x, clip=None),
      jax.grad(bounds.smile)(x), jax.grad(bounds.jsd)(x)))(s)
  np.testing.assert_allclose(got, ref_smile(s64, None, 1.0), rtol=1e-5)
  assert abs(float(got) - ref_dv(s64)) > 1e-2      # the clip matters here
  np.testing.assert_allclose(unclipped, ref_dv(s64), rtol=1e-5)
  np.testing.assert_allclose(grad, js_grad, rtol=1e-6)


def test_interpolated_endpoints_and_traced_alpha():
  s = rand_scores((6, 6), seed=13)
  s64 = s.astype(np.float64)
  a = np.linspace(-0.5, 0.5, 6).astype(np.float32)
  f = jax.jit(bounds.interpolated)   # alpha and the baseline are traced
  np.testing.assert_allclose(f(s, alpha=0.0, log_baseline=a),
                             ref_tuba(s64, None, a), rtol=1e-5)
  for alpha in (0.3, 1.0):
    np.testing.assert_allclose(f(s, alpha=alpha),
                               ref_interpolated(s64, None, alpha), rtol=1e-5)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad, match", [
    (np.zeros(4, np.float32), "2-D"),
    (np.zeros((3, 3), np.int32), "floating"),
    (np.zeros((3, 4), np.float32), "square"),
])
def test_bad_scores_raise(bad, match):
  for name in bounds.NAMES:
    with pytest.raises(ValueError, match=match):
      scalar_fn(name)(bad)


def test_bad_masks_raise():
  s = np.zeros((3, 4), np.float32)
  with pytest.raises(ValueError, match="boolean"):
    bounds.infonce(s, np.zeros((3, 4), np.float32))
  with pytest.raises(ValueError, match="shape"):
    bounds.dv(s, np.zeros((4, 3), bool))
  with pytest.raises(ValueError, match="diagonal mask"):
    bounds.interpolated(np.zeros((3, 3), np.float32), np.eye(3, dtype=bool))
  with pytest.raises(ValueError, match="readout"):
    bounds.jsd(np.zeros((3, 3), np.float32), readout="tuba")


def test_get_unknown_name_lists_names():
  with pytest.raises(ValueError, match="infonce.*smile"):
    bounds.get("infonse")
  assert set(bounds.NAMES) == {"infonce", "nwj", "tuba", "dv", "mine", "jsd",
                               "interpolated", "smile"}
  assert all(bounds.get(n) is getattr(bounds, n) for n in bounds.NAMES)
