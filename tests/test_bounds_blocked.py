"""Tests of mi_jax.bounds.blocked: equal to the dense bounds, O(K x block)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from mi_jax import bounds
from mi_jax.bounds import blocked

NAMES = ("infonce", "dv", "nwj")


def embeddings(k=37, da=5, db=4, seed=0):
  r = np.random.RandomState(seed)
  za = r.normal(size=(k, da)).astype(np.float32)
  zb = r.normal(size=(k, db)).astype(np.float32)
  w = (0.5 * r.normal(size=(da, db))).astype(np.float32)
  return za, zb, w


def ref_value(name, s):
  k = s.shape[0]
  diag, off = np.diag(s), s[~np.eye(k, dtype=bool)]
  if name == "infonce":
    return np.mean(diag - logsumexp(s, axis=1)) + np.log(k)
  if name == "dv":
    return np.mean(diag) - (logsumexp(off) - np.log(off.size))
  return np.mean(diag) - np.exp(-1) * np.mean(np.exp(off))


def test_value_and_grads_equal_dense_bilinear(block_size=8):  # 37 % 8 != 0
  za, zb, w = embeddings()

  def both(a, b, w):
    out = {}
    for n in NAMES:
      fb = lambda a, b, w: getattr(blocked, n)(a, b, weight=w,
                                               block_size=block_size)
      fd = lambda a, b, w: bounds.get(n)(a @ w @ b.T)
      out[n] = (jax.value_and_grad(fb, argnums=(0, 1, 2))(a, b, w),
                jax.value_and_grad(fd, argnums=(0, 1, 2))(a, b, w))
    return out

  s64 = za.astype(np.float64) @ w @ zb.T.astype(np.float64)
  for n, ((vb, gb), (vd, gd)) in jax.jit(both)(za, zb, w).items():
    np.testing.assert_allclose(vb, ref_value(n, s64), rtol=1e-5, err_msg=n)
    np.testing.assert_allclose(vb, vd, rtol=1e-5, err_msg=n)
    for x, y in zip(gb, gd):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=n)


def test_inner_product_and_row_logsumexp():
  za, zb, _ = embeddings(k=20, da=6, db=6, seed=1)   # one block > K
  s64 = za.astype(np.float64) @ zb.T.astype(np.float64)

  @jax.jit
  def run(a, b):
    vals = {n: getattr(blocked, n)(a, b, block_size=64) for n in NAMES}
    lse = blocked.row_logsumexp(a, b, exclude_diagonal=True, block_size=64)
    return vals, lse

  vals, lse = run(za, zb)
  for n in NAMES:
    np.testing.assert_allclose(vals[n], ref_value(n, s64), rtol=1e-5,
                               err_msg=n)
  off = np.where(np.eye(20, dtype=bool), -np.inf, s64)
  np.testing.assert_allclose(lse, logsumexp(off, axis=1), rtol=1e-5)


def test_memory_is_linear_in_k():
  k, block = 2048, 64
  z = jnp.zeros((k, 8), jnp.float32)

  def temp_bytes(f):
    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    return g.lower(z, z).compile().memory_analysis().temp_size_in_bytes

  blocked_bytes = temp_bytes(
      lambda a, b: blocked.infonce(a, b, block_size=block))
  dense_bytes = temp_bytes(lambda a, b: bounds.infonce(a @ b.T))
  k2 = k * k * 4
  assert dense_bytes >= k2            # the dense path holds K^2 scores
  assert blocked_bytes < k2 / 8       # the blocked one only K x block


def test_bad_inputs_raise():
  za, zb, w = embeddings(k=5)
  with pytest.raises(ValueError, match="same number of rows"):
    blocked.infonce(za, zb[:4], weight=w)
  with pytest.raises(ValueError, match="equal widths"):
    blocked.dv(za, zb)
  with pytest.raises(ValueError, match="weight must have shape"):
    blocked.nwj(za, zb, weight=w.T)
  with pytest.raises(ValueError, match="block_size"):
    blocked.infonce(za, za, block_size=0)
  with pytest.raises(ValueError, match="2-D"):
    blocked.infonce(za[0], za[0])
