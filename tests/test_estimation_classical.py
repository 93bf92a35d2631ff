"""Tests of the classical baselines (Gaussian/CCA, KSG), the tasks and input checks."""

import numpy as np
import pytest
from scipy import stats

from mi_jax import estimation
from mi_jax.estimation import tasks


def test_gaussian_mi_matches_truth_on_correlated_gaussian():
  task = tasks.correlated_gaussian(5, mi=2.0)
  x, y = task.sample(20000, seed=1)
  assert estimation.gaussian_mi(x, y) == pytest.approx(2.0, abs=0.06)


def test_gaussian_mi_matches_logdet_formula_on_dense_gaussian():
  task = tasks.dense_gaussian(3, 4, correlation=0.4)
  x, y = task.sample(20000, seed=2)
  # Reference: 1/2 (log det C_xx + log det C_yy - log det C) of the sample cov.
  cov = np.cov(np.concatenate([x, y], 1).astype(np.float64), rowvar=False)
  ref = tasks.gaussian_mi_from_cov(cov, 3)
  assert estimation.gaussian_mi(x, y) == pytest.approx(ref, rel=1e-6)
  assert ref == pytest.approx(task.mi, abs=0.03)


def test_gaussian_mi_is_zero_for_independent_samples():
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal((5000, 3)), rng.standard_normal((5000, 2))
  assert estimation.gaussian_mi(x, y) < 0.01


def test_canonical_correlations_of_sparse_gaussian():
  task = tasks.sparse_gaussian(4, 3, n_pairs=2, rho=0.8)
  rho = estimation.canonical_correlations(*task.sample(20000, seed=3))
  np.testing.assert_allclose(np.sort(rho)[::-1], [0.8, 0.8, 0.0], atol=0.03)


def test_ksg_matches_truth_in_low_dimension():
  task = tasks.correlated_gaussian(1, rho=0.8)
  x, y = task.sample(3000, seed=4)
  assert estimation.ksg_mi(x, y, k=5) == pytest.approx(task.mi, abs=0.05)


def test_ksg_standardizes_columns():
  task = tasks.correlated_gaussian(2, rho=0.6)
  x, y = task.sample(2000, seed=5)
  scaled_x = x * np.array([100.0, 0.01], np.float32)
  plain = estimation.ksg_mi(x, y, k=5)
  assert estimation.ksg_mi(scaled_x, y, k=5) == pytest.approx(plain, abs=1e-3)
  # Without standardizing, the max-norm is dominated by the large column.
  assert estimation.ksg_mi(scaled_x, y, k=5, standardize=False) < plain - 0.1
  assert plain == pytest.approx(task.mi, abs=0.08)


def test_ksg_near_zero_for_independent_samples():
  rng = np.random.default_rng(6)
  x, y = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 2))
  assert abs(estimation.ksg_mi(x, y, k=5)) < 0.05


def test_student_t_mi_matches_monte_carlo():
  task = tasks.student_t(2, 1, df=4.0, rho=0.5, n_pairs=1)
  x, y = task.sample(100000, seed=7)
  x, y = x.astype(np.float64), y.astype(np.float64)
  disp = np.eye(3)
  disp[0, 2] = disp[2, 0] = 0.5
  log_ratio = (stats.multivariate_t(shape=disp, df=4.0).logpdf(np.c_[x, y])
               - stats.multivariate_t(shape=np.eye(2), df=4.0).logpdf(x)
               - stats.multivariate_t(shape=[[1.0]], df=4.0).logpdf(y))
  assert task.mi == pytest.approx(log_ratio.mean(), abs=0.01)
  assert tasks.student_t_mi_correction(2, 1, 4.0) > 0


def test_rho_for_mi_inverts_mi_for_rho():
  for mi in (0.5, 2.0, 10.0):
    assert tasks.mi_for_rho(tasks.rho_for_mi(mi, 20), 20) == pytest.approx(mi)


def test_transforms_keep_the_mi_and_change_the_samples():
  base = tasks.correlated_gaussian(3, mi=1.0)
  for task in (tasks.cubic(base), tasks.asinh(base)):
    assert task.mi == base.mi
    assert not np.allclose(task.sample(10, 0)[1], base.sample(10, 0)[1])


@pytest.mark.parametrize("fn", [estimation.gaussian_mi, estimation.ksg_mi])
@pytest.mark.parametrize("x, y, match", [
    (np.zeros((10, 2)), np.zeros((9, 2)), "same number of samples"),
    (np.zeros(10), np.zeros((10, 2)), r"reshape\(-1, 1\)"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), "non-finite"),
    (np.zeros((10, 2, 2)), np.zeros((10, 2)), "2-D"),
])
def test_classical_bad_input_raises_clear_errors(fn, x, y, match):
  with pytest.raises(ValueError, match=match):
    fn(x, y)


def test_estimator_protocol_classical():
  task = tasks.correlated_gaussian(2, rho=0.7)
  x, y = task.sample(2000, seed=8)
  for est in (estimation.GaussianEstimator(), estimation.KSGEstimator(k=5)):
    value = est.estimate(x, y)
    assert isinstance(value, float)
    assert value == pytest.approx(task.mi, abs=0.1)
    assert isinstance(est.parameters(), dict)
