"""Classical MI baselines in NumPy/SciPy: the Gaussian (CCA) closed form and KSG.

Both take two sample matrices `x_NxDx`, `y_NxDy` and return nats. They run on
the host (no JAX) and serve as the reference points that neural estimates are
compared against.
"""

import numpy as np
from scipy import spatial, special

from mi_jax.estimation import _checks


def canonical_correlations(x, y) -> np.ndarray:
  """Canonical correlations rho_i between `x_NxDx` and `y_NxDy` (Hotelling 1936).

  rho_i are the singular values of Qx^T Qy, where Qx, Qy are orthonormal bases
  of the centred columns of x and y (thin QR); min(Dx, Dy) values in [0, 1].
  """
  x_NxDx, y_NxDy = _checks.check_xy(x, y, min_samples=2)
  x_NxDx = x_NxDx.astype(np.float64)
  y_NxDy = y_NxDy.astype(np.float64)
  n, dx = x_NxDx.shape
  dy = y_NxDy.shape[1]
  if n <= dx + dy:
    raise ValueError(
        f"the Gaussian estimator needs more samples ({n}) than dimensions "
        f"(dim_x + dim_y = {dx + dy}); pass more samples or reduce the dimension.")
  qx_NxDx, _ = np.linalg.qr(x_NxDx - x_NxDx.mean(0))
  qy_NxDy, _ = np.linalg.qr(y_NxDy - y_NxDy.mean(0))
  rho = np.linalg.svd(qx_NxDx.T @ qy_NxDy, compute_uv=False)
  return np.clip(rho, 0.0, 1.0)


def gaussian_mi(x, y, *, max_correlation: float = 1.0 - 1e-12) -> float:
  """MI of `x_NxDx`, `y_NxDy` under a joint Gaussian fit, in nats.

  I = -1/2 sum_i log(1 - rho_i^2) over the canonical correlations rho_i
  (Gelfand & Yaglom 1959; Kullback 1959): exact for jointly Gaussian data, a
  lower bound on the MI of any distribution with the same covariance
  (the Gaussian maximises entropy). `max_correlation` keeps the value finite
  when a canonical correlation is 1 (y a linear function of x).
  """
  rho = np.minimum(canonical_correlations(x, y), max_correlation)
  return float(-0.5 * np.sum(np.log1p(-rho**2)))


def ksg_mi(x, y, *, k: int = 3, standardize: bool = True, jitter: float = 1e-10,
           seed: int = 0, workers: int = 1) -> float:
  """Kraskov-Stoegbauer-Grassberger MI estimate (estimator 1), in nats.

  I = psi(k) + psi(N) - < psi(n_x(i) + 1) + psi(n_y(i) + 1) >_i, where eps_i is
  the max-norm distance from (x_i, y_i) to its k-th nearest neighbour in the
  joint space, and n_x(i) (n_y(i)) counts the points j != i with
  ||x_j - x_i||_max < eps_i (resp. y). Kraskov, Stoegbauer & Grassberger,
  "Estimating mutual information", Phys. Rev. E 69, 066138 (2004), eq. (8).

  Args:
    x: samples `[N, Dx]`.
    y: samples `[N, Dy]`, paired row by row with x.
    k: number of neighbours (3-10 is usual; larger k: lower variance, more bias).
    standardize: rescale each column to unit variance first (the max-norm
      mixes coordinates, so scale matters).
    jitter: std of Gaussian noise added (relative to unit scale) to break ties
      between repeated values; 0 to disable.
    seed: seed of the jitter.
    workers: threads for the KD-tree queries (-1: all cores).
  """
  x_NxDx, y_NxDy = _checks.check_xy(x, y, min_samples=2)
  n = x_NxDx.shape[0]
  if not 1 <= k < n:
    raise ValueError(f"k must be in [1, n_samples - 1] = [1, {n - 1}]; got {k}.")
  x_NxDx = x_NxDx.astype(np.float64)
  y_NxDy = y_NxDy.astype(np.float64)
  if standardize:
    x_NxDx = (x_NxDx - x_NxDx.mean(0)) / np.maximum(x_NxDx.std(0), 1e-300)
    y_NxDy = (y_NxDy - y_NxDy.mean(0)) / np.maximum(y_NxDy.std(0), 1e-300)
  if jitter:
    rng = np.random.default_rng(seed)
    x_NxDx = x_NxDx + jitter * rng.standard_normal(x_NxDx.shape)
    y_NxDy = y_NxDy + jitter * rng.standard_normal(y_NxDy.shape)
  xy_NxD = np.concatenate([x_NxDx, y_NxDy], axis=1)
  dist_NxK, _ = spatial.cKDTree(xy_NxD).query(
      xy_NxD, k=k + 1, p=np.inf, workers=workers)
  # Strictly closer than eps_i: shrink the radius by one ulp.
  radius_N = np.nextafter(dist_NxK[:, -1], 0.0)
  n_x = spatial.cKDTree(x_NxDx).query_ball_point(
      x_NxDx, radius_N, p=np.inf, return_length=True, workers=workers) - 1
  n_y = spatial.cKDTree(y_NxDy).query_ball_point(
      y_NxDy, radius_N, p=np.inf, return_length=True, workers=workers) - 1
  mi = (special.digamma(k) + special.digamma(n)
        - np.mean(special.digamma(n_x + 1) + special.digamma(n_y + 1)))
  return float(mi)
