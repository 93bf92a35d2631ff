"""DIM's evaluation suite (mi_jax.evaluation.dim_suite)."""

import numpy as np
import pytest

from mi_jax.evaluation import dim_suite
from mi_jax.evaluation import protocols


def test_shuffle_dimensions_keeps_marginals_and_breaks_dependence():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(2000, 1))
  y = np.concatenate([z, z + 0.1 * rng.normal(size=(2000, 1))], axis=1)
  s = dim_suite.shuffle_dimensions(y, seed=1)
  np.testing.assert_array_equal(np.sort(s, 0), np.sort(y, 0))
  assert np.corrcoef(y.T)[0, 1] > 0.99
  assert abs(np.corrcoef(s.T)[0, 1]) < 0.1


def test_reference_mlp_probe_learns_a_separable_task():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(3, 10)) * 3
  labels = rng.integers(0, 3, 600)
  x = centers[labels] + rng.normal(size=(600, 10))
  acc = dim_suite.reference_mlp_probe(x[:400], labels[:400], x[400:],
                                      labels[400:], epochs=6,
                                      milestones=(2, 4), lr=1e-3, seed=0)
  assert acc > 0.95
  # Chance-level labels cannot be learned: test accuracy near 1/3.
  shuffled = rng.permutation(labels)
  acc = dim_suite.reference_mlp_probe(x[:400], shuffled[:400], x[400:],
                                      shuffled[400:], epochs=6,
                                      milestones=(2, 4), lr=1e-3, seed=0)
  assert acc < 0.5


def test_prior_statistics_on_uniform_and_on_saturated_codes():
  rng = np.random.default_rng(0)
  u = rng.uniform(size=(2000, 4))
  y = np.log(u / (1 - u))  # sigmoid(y) ~ U[0, 1]^4, the prior itself
  stats = dim_suite.prior_statistics(y, steps=200)
  assert abs(stats["prior_heldout_acc"] - 0.5) < 0.05
  assert abs(stats["prior_js"]) < 0.02
  np.testing.assert_allclose(stats["y_norm"],
                             np.mean(np.linalg.norm(y, axis=1)), rtol=1e-12)
  np.testing.assert_allclose(stats["code_saturated"],
                             np.mean(np.abs(y) > np.log(99)), rtol=1e-12)
  far = dim_suite.prior_statistics(8 * np.sign(y), steps=200)  # saturated
  assert far["code_saturated"] == 1.0 and far["prior_heldout_acc"] > 0.95
  # True JS = log 2 = 0.693 (point masses vs a density); a lower bound after
  # 200 steps (measured 0.557).
  assert 0.5 < far["prior_js"] <= np.log(2) + 0.01


def test_protocols_are_registered_and_quick_mode_is_empty():
  assert protocols.get("dim_suite") is dim_suite.suite_protocol
  assert protocols.get("reference_mlp") is dim_suite.reference_mlp_protocol
  feats = {"test": np.zeros((10, 5), np.float32)}
  assert dim_suite.suite_protocol(feats, {}, options={"code_dim": 2}, seed=0,
                                  full=False) == {}
  with pytest.raises(ValueError):
    dim_suite.reference_mlp_probe(np.zeros((5, 2)), np.zeros(4), np.zeros((3, 2)),
                                  np.zeros(3))


def test_marginal_uniform_js_exact_values():
  k = 20
  q = 1.0 / k
  flat_N = (np.arange(10 * k) + 0.5) / (10 * k)      # 10 per bin: JS 0
  spike_N = np.full(10 * k, 0.01)                    # all in bin 0
  js_spike = 0.5 * (np.log(2 / (1 + q))
                    + q * np.log(2 * q / (1 + q)) + (1 - q) * np.log(2))
  assert dim_suite.marginal_uniform_js(flat_N[:, None]) == pytest.approx(0, abs=1e-15)
  assert dim_suite.marginal_uniform_js(spike_N[:, None]) == pytest.approx(js_spike, rel=1e-12)
  both = np.stack([flat_N, spike_N], 1)
  assert dim_suite.marginal_uniform_js(both) == pytest.approx(js_spike / 2, rel=1e-12)
  assert js_spike < np.log(2)
  with pytest.raises(ValueError, match="2-D"):
    dim_suite.marginal_uniform_js(flat_N)


def test_mean_abs_correlation_exact_values():
  x = np.array([1.0, -1.0, 1.0, -1.0])
  y = np.array([1.0, 1.0, -1.0, -1.0])             # orthogonal to x
  u = np.stack([x, y, x + y], 1)                   # corr(x, x + y) = 1/sqrt 2
  assert dim_suite.mean_abs_correlation(u) == pytest.approx(
      2 * 2 ** -0.5 * 2 / 6, rel=1e-12)
  assert dim_suite.mean_abs_correlation(np.stack([x, -3 * x + 1], 1)) == pytest.approx(1.0)
  assert dim_suite.mean_abs_correlation(np.stack([x, np.ones(4)], 1)) == 0.0


def test_evaluate_encoder_probes_only_skips_the_estimators():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  enc = encoders.make("dim_conv", rngs=nnx.Rngs(0), channels=(4, 8),
                      fc_dim=16, code_dim=8, local_layer=0, image_size=28,
                      in_channels=1)
  enc.eval()
  rng = np.random.default_rng(0)
  labels_N = np.arange(120) % 2
  images = rng.uniform(size=(120, 28, 28, 1)).astype(np.float32)
  images[labels_N == 1, :14] += 1.0  # class 1: a brighter top half
  out = dim_suite.evaluate_encoder(enc, images[:80], labels_N[:80],
                                   images[80:], labels_N[80:],
                                   mlp_features=(), estimator_steps=0)
  assert sorted(out) == ["linear/conv", "linear/fc", "linear/y"]
  assert out["linear/conv"] == 1.0  # the brightness split is linear in conv
