"""True MI of mi_jax.estimation.tasks against closed forms and Monte Carlo."""

import numpy as np
import pytest
from scipy import stats

from mi_jax.estimation import tasks


def _monte_carlo_mi(task, logpdf_joint, logpdf_x, logpdf_y, n=200_000):
  """E[log p(x, y) - log p(x) - log p(y)] over n samples, with its SE."""
  x, y = task.sample(n, seed=1)
  x, y = x.astype(np.float64), y.astype(np.float64)
  terms = logpdf_joint(np.concatenate([x, y], 1)) - logpdf_x(x) - logpdf_y(y)
  return terms.mean(), terms.std() / np.sqrt(n)


@pytest.mark.parametrize("dx, dy, df", [(1, 1, 1.0), (2, 3, 3.0), (5, 5, 2.0)])
def test_student_t_mi_matches_monte_carlo(dx, dy, df):
  task = tasks.student_t(dx, dy, df=df, rho=0.0)
  joint = stats.multivariate_t(np.zeros(dx + dy), np.eye(dx + dy), df=df)
  mx = stats.multivariate_t(np.zeros(dx), np.eye(dx), df=df)
  my = stats.multivariate_t(np.zeros(dy), np.eye(dy), df=df)
  # Samples are stored as float32: keep them in float64 here for the check.
  mc, se = _monte_carlo_mi(task, joint.logpdf,
                           lambda a: np.atleast_1d(mx.logpdf(a)),
                           lambda a: np.atleast_1d(my.logpdf(a)))
  assert task.mi == pytest.approx(mc, abs=4 * se + 2e-3)


def test_student_t_with_dispersion_matches_monte_carlo():
  task = tasks.student_t(2, 2, df=3.0, rho=0.6)
  disp = np.eye(4)
  disp[0, 2] = disp[2, 0] = disp[1, 3] = disp[3, 1] = 0.6
  joint = stats.multivariate_t(np.zeros(4), disp, df=3.0)
  marg = stats.multivariate_t(np.zeros(2), np.eye(2), df=3.0)
  mc, se = _monte_carlo_mi(task, joint.logpdf, marg.logpdf, marg.logpdf)
  assert task.mi == pytest.approx(mc, abs=4 * se + 2e-3)


def test_gaussian_rows_match_closed_forms():
  # Sparse: only 2 correlated pairs -> -2/2 log(1 - 0.8^2).
  assert tasks.sparse_gaussian(25, 25, n_pairs=2, rho=0.8).mi == pytest.approx(
      -np.log(1 - 0.64), rel=1e-12)
  # Dense equicorrelated: 1 canonical correlation r^2 = (dx c)(dy c) /
  # ((1 + (dx-1) c)(1 + (dy-1) c)), the rest 0.
  for d, c in ((5, 0.5), (25, 0.5)):
    r2 = (d * c) ** 2 / (1 + (d - 1) * c) ** 2
    assert tasks.dense_gaussian(d, d, correlation=c).mi == pytest.approx(
        -0.5 * np.log(1 - r2), rel=1e-10)
  assert tasks.correlated_gaussian(1, rho=0.75).mi == pytest.approx(
      -0.5 * np.log(1 - 0.75**2), rel=1e-12)


def test_issue_table_truths():
  got = {t.name: t.mi for t in tasks.issue_table()}
  # The true MI column of issue 9 (3 decimals).
  want = [0.413, 0.413, 0.593, 1.292, 1.022, 0.448, 0.448]
  np.testing.assert_allclose(list(got.values())[:7], want, atol=5e-4)
  assert len(tasks.heavy_tail_grid()) == 24


def test_transforms_are_invertible_so_mi_is_unchanged():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((1000, 3)) * 2
  np.testing.assert_allclose(
      tasks.signed_power(tasks.signed_power(a), 1 / 1.5), a, atol=1e-12)
  b = tasks.spiral_map(a)
  np.testing.assert_allclose(np.linalg.norm(b, axis=1),
                             np.linalg.norm(a, axis=1), rtol=1e-12)
  np.testing.assert_allclose(tasks.spiral_map(b, -1 / 3), a, atol=1e-10)
  assert np.abs(b - a).max() > 1.0  # it does rotate
  base = tasks.correlated_gaussian(3, rho=0.75)
  for t in (tasks.spiral(base), tasks.half_cube(base)):
    assert t.mi == base.mi
    x, y = t.sample(100, seed=2)
    x0, y0 = base.sample(100, seed=2)
    assert not np.allclose(x, x0)
  with pytest.raises(ValueError, match="2 dimensions"):
    tasks.spiral_map(a[:, :1])
