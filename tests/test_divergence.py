"""Two-sample divergences (mi_jax.estimation.divergence)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mi_jax import estimation
from mi_jax.estimation import divergence as div


def test_gaussian_kl_closed_form():
  # 1-D: log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
  got = div.gaussian_kl([0.3], [[4.0]], [-1.0], [[9.0]])
  want = np.log(3 / 2) + (4 + 1.3 ** 2) / 18 - 0.5
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert div.gaussian_kl(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3)) == 0


def test_dv_kl_of_two_gaussians_within_5_percent_at_10k_samples():
  # P = N(0, I_2), Q = N(m, I_2), KL = |m|^2 / 2 = 1 nat. 10k samples of each
  # train the critic and another 10k of each are the held-out read-out (the
  # sampling noise of the read-out alone is about 3% here).
  rng = np.random.default_rng(0)
  m = np.array([1.0, 1.0])
  x = rng.normal(size=(20000, 2))
  y = rng.normal(size=(20000, 2)) + m
  true = div.gaussian_kl(np.zeros(2), np.eye(2), m, np.eye(2))
  assert true == pytest.approx(1.0)
  res = estimation.estimate_divergence(x, y, kind="kl", bound="dv", steps=400, seed=0)
  assert res.n_heldout == 20000
  assert abs(res.value / true - 1) < 0.05, res
  # The optimal classifier log p/q > 0 has balanced accuracy Phi(|m|/2) = 0.76.
  assert res.heldout_accuracy == pytest.approx(0.760, abs=0.02)


def test_same_distribution_gives_zero_js_and_chance_accuracy():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
  res = estimation.estimate_divergence(x, y, kind="js", steps=200, seed=1)
  assert abs(res.value) < 0.01 and abs(res.heldout_accuracy - 0.5) < 0.04
  assert res.bound == "jsd"


def test_js_and_chi2_readouts_match_numpy():
  # The read-outs are the f-GAN bounds of the given scores, in closed form.
  s = np.array([1.5, -0.3, 2.0, 0.1, -1.0, 0.4], np.float32)
  mask = np.array([True, True, True, False, False, False])
  sp = lambda v: np.log1p(np.exp(v))
  js = 0.5 * (np.mean(-sp(-s[:3])) - np.mean(sp(s[3:]))) + np.log(2)
  got = jax.jit(div._bound_value, static_argnums=0)(  # pylint: disable=protected-access
      "jsd", jnp.asarray(s)[None], jnp.asarray(mask)[None])
  np.testing.assert_allclose(float(got), js, rtol=1e-5)
  chi2 = np.mean(s[:3]) - np.mean(s[3:] + s[3:] ** 2 / 4)
  np.testing.assert_allclose(
      float(div.chi2_bound(jnp.asarray(s)[None], jnp.asarray(mask)[None])),
      chi2, rtol=1e-5)


def test_bad_input_errors():
  x = np.zeros((10, 2))
  with pytest.raises(ValueError, match="kind"):
    estimation.estimate_divergence(x, x, kind="tv")
  with pytest.raises(ValueError, match="bound"):
    estimation.estimate_divergence(x, x, kind="kl", bound="jsd")
  with pytest.raises(ValueError, match="same D"):
    estimation.estimate_divergence(x, np.zeros((10, 3)))
