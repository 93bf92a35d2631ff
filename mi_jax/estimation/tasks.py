"""Synthetic tasks with known mutual information, for testing estimators.

A `Task` draws paired samples `(x_NxDx, y_NxDy)` with `task.sample(n, seed)`
and knows its true MI in nats (`task.mi`). Families (after the "beyond normal"
benchmark of Czyz et al., NeurIPS 2023, and Poole et al., ICML 2019):

  correlated_gaussian  x_i, y_i pairwise correlated with rho (Poole's staircase)
  dense_gaussian       every coordinate correlated with every other
  sparse_gaussian      only the first few (x_i, y_i) pairs correlated
  transformed          any task with invertible maps applied to x and/or y
                       (MI is unchanged), e.g. cubic, asinh, half_cube
                       (x -> x sqrt|x|), spiral (a norm-dependent rotation)
  student_t            a multivariate Student-t pair (heavy tails; MI > 0
                       even with identity dispersion)

`issue_table()` and `heavy_tail_grid()` list the rows of the accuracy
benchmark (experiments/benchmarks/estimation_tasks.py).
"""

import dataclasses
from typing import Callable

import numpy as np
from scipy import special


@dataclasses.dataclass(frozen=True)
class Task:
  """Paired samples with known MI.

  Attributes:
    name: short identifier, e.g. "gaussian-20d-rho0.5".
    dim_x: dimension of x.
    dim_y: dimension of y.
    mi: true mutual information in nats.
    sampler: `(n, rng) -> (x_NxDx, y_NxDy)` with rng a `np.random.Generator`.
  """
  name: str
  dim_x: int
  dim_y: int
  mi: float
  sampler: Callable[[int, np.random.Generator], tuple]

  def sample(self, n: int, seed: int = 0):
    """Returns `(x_NxDx, y_NxDy)` as float32 NumPy arrays."""
    x_NxDx, y_NxDy = self.sampler(n, np.random.default_rng(seed))
    return x_NxDx.astype(np.float32), y_NxDy.astype(np.float32)


def gaussian_mi_from_cov(cov_DxD, dim_x: int) -> float:
  """MI of a joint Gaussian: I = 1/2 (log det C_xx + log det C_yy - log det C)."""
  cov_DxD = np.asarray(cov_DxD, np.float64)
  logdet = lambda m: np.linalg.slogdet(m)[1]
  return float(0.5 * (logdet(cov_DxD[:dim_x, :dim_x])
                      + logdet(cov_DxD[dim_x:, dim_x:]) - logdet(cov_DxD)))


def rho_for_mi(mi: float, dim: int) -> float:
  """Componentwise correlation with total MI `mi` over `dim` pairs.

  I = -dim/2 log(1 - rho^2)  <=>  rho = sqrt(1 - exp(-2 I / dim)).
  """
  return float(np.sqrt(1.0 - np.exp(-2.0 * mi / dim)))


def mi_for_rho(rho: float, dim: int) -> float:
  """I = -dim/2 log(1 - rho^2) for `dim` independent pairs of correlation rho."""
  return float(-0.5 * dim * np.log1p(-rho**2))


def multivariate_normal(cov_DxD, dim_x: int, name: str = "mvn") -> Task:
  """Task for x = z[:dim_x], y = z[dim_x:] with z ~ N(0, cov_DxD)."""
  cov_DxD = np.asarray(cov_DxD, np.float64)
  if np.linalg.eigvalsh(cov_DxD).min() <= 0:
    raise ValueError("cov_DxD must be positive definite.")
  chol_DxD = np.linalg.cholesky(cov_DxD)
  d = cov_DxD.shape[0]

  def sampler(n, rng):
    z_NxD = rng.standard_normal((n, d)) @ chol_DxD.T
    return z_NxD[:, :dim_x], z_NxD[:, dim_x:]

  return Task(name, dim_x, d - dim_x, gaussian_mi_from_cov(cov_DxD, dim_x),
              sampler)


def correlated_gaussian(dim: int = 20, *, rho: float | None = None,
                        mi: float | None = None) -> Task:
  """x, y ~ N(0, I_dim) with corr(x_i, y_j) = rho [i == j] (Poole et al. 2019).

  Give either `rho` or the target `mi` (then rho = sqrt(1 - exp(-2 mi / dim))).
  y = rho x + sqrt(1 - rho^2) eps; I = -dim/2 log(1 - rho^2).
  """
  if (rho is None) == (mi is None):
    raise ValueError("give exactly one of rho or mi.")
  if rho is None:
    rho = rho_for_mi(mi, dim)
  if not -1.0 < rho < 1.0:
    raise ValueError(f"rho must be in (-1, 1); got {rho}.")

  def sampler(n, rng):
    x_NxD = rng.standard_normal((n, dim))
    eps_NxD = rng.standard_normal((n, dim))
    return x_NxD, rho * x_NxD + np.sqrt(1.0 - rho**2) * eps_NxD

  return Task(f"gaussian-{dim}d-mi{mi_for_rho(rho, dim):.2f}", dim, dim,
              mi_for_rho(rho, dim), sampler)


def dense_gaussian(dim_x: int = 5, dim_y: int = 5, *,
                   correlation: float = 0.5) -> Task:
  """Equicorrelated normal: C = (1 - c) I + c 11^T over all dim_x + dim_y dims.

  The "Multinormal dense" task of Czyz et al. 2023; MI from log-determinants.
  """
  d = dim_x + dim_y
  cov_DxD = (1.0 - correlation) * np.eye(d) + correlation * np.ones((d, d))
  return multivariate_normal(cov_DxD, dim_x,
                             f"dense-gaussian-{dim_x}x{dim_y}-c{correlation}")


def sparse_gaussian(dim_x: int = 5, dim_y: int = 5, *, n_pairs: int = 2,
                    rho: float = 0.8) -> Task:
  """Only (x_i, y_i) for i < n_pairs are correlated (rho); the rest is noise.

  The "Multinormal sparse" task of Czyz et al. 2023;
  I = -n_pairs/2 log(1 - rho^2).
  """
  if n_pairs > min(dim_x, dim_y):
    raise ValueError("n_pairs must be <= min(dim_x, dim_y).")
  cov_DxD = np.eye(dim_x + dim_y)
  for i in range(n_pairs):
    cov_DxD[i, dim_x + i] = cov_DxD[dim_x + i, i] = rho
  return multivariate_normal(
      cov_DxD, dim_x, f"sparse-gaussian-{dim_x}x{dim_y}-{n_pairs}pairs")


def transformed(task: Task, fx: Callable | None = None,
                fy: Callable | None = None, name: str | None = None) -> Task:
  """The task with invertible maps fx, fy applied to x and y: same MI.

  I(f(X); g(Y)) = I(X; Y) for injective f, g (Cover & Thomas, data processing
  in both directions).
  """
  fx = fx or (lambda a: a)
  fy = fy or (lambda a: a)

  def sampler(n, rng):
    x_NxDx, y_NxDy = task.sampler(n, rng)
    return fx(x_NxDx), fy(y_NxDy)

  return Task(name or f"{task.name}-transformed", task.dim_x, task.dim_y,
              task.mi, sampler)


def cubic(task: Task) -> Task:
  """y -> y^3 (the cubic staircase of Poole et al. 2019); MI unchanged."""
  return transformed(task, fy=lambda y: y**3, name=f"{task.name}-cubic")


def asinh(task: Task) -> Task:
  """x -> asinh(x), y -> asinh(y) (a "beyond normal" transform); MI unchanged."""
  return transformed(task, np.arcsinh, np.arcsinh, name=f"{task.name}-asinh")


def student_t_entropy(dim: int, df: float) -> float:
  """Differential entropy of a standard multivariate t_df(0, I_dim), nats.

  H = log G(v/2) - log G((v+k)/2) + k/2 log(v pi)
      + (v+k)/2 [psi((v+k)/2) - psi(v/2)]
  with v = df, k = dim (Arellano-Valle, Contreras-Reyes & Genton, Scand. J.
  Stat. 40, 2013, eq. 7).
  """
  v, k = float(df), float(dim)
  return float(special.gammaln(v / 2) - special.gammaln((v + k) / 2)
               + k / 2 * np.log(v * np.pi)
               + (v + k) / 2 * (special.digamma((v + k) / 2)
                                - special.digamma(v / 2)))


def student_t_mi_correction(dim_x: int, dim_y: int, df: float) -> float:
  """I_t(Sigma) - I_Gauss(Sigma) = H_t(dim_x) + H_t(dim_y) - H_t(dim_x + dim_y).

  The dispersion enters only through the Gaussian term (log-determinants are
  common to both), so the correction depends on the dimensions and df alone
  (Arellano-Valle et al. 2013; Czyz et al. 2023). It is > 0 and -> 0 as
  df -> inf.
  """
  return (student_t_entropy(dim_x, df) + student_t_entropy(dim_y, df)
          - student_t_entropy(dim_x + dim_y, df))


def student_t(dim_x: int = 2, dim_y: int = 2, *, df: float = 3.0,
              rho: float = 0.0, n_pairs: int | None = None) -> Task:
  """(x, y) multivariate Student-t with dispersion Sigma and df degrees of freedom.

  Sigma = I with Sigma[i, dim_x + i] = rho for i < n_pairs (default: all
  min(dim_x, dim_y) pairs). Sampling: z ~ N(0, Sigma), u ~ chi2(df),
  (x, y) = z / sqrt(u / df). I = I_Gauss(Sigma) + student_t_mi_correction:
  heavy tails share information even when rho = 0.
  """
  n_pairs = min(dim_x, dim_y) if n_pairs is None else n_pairs
  d = dim_x + dim_y
  disp_DxD = np.eye(d)
  for i in range(n_pairs):
    disp_DxD[i, dim_x + i] = disp_DxD[dim_x + i, i] = rho
  if np.linalg.eigvalsh(disp_DxD).min() <= 0:
    raise ValueError("dispersion must be positive definite (|rho| < 1).")
  chol_DxD = np.linalg.cholesky(disp_DxD)
  mi = (gaussian_mi_from_cov(disp_DxD, dim_x)
        + student_t_mi_correction(dim_x, dim_y, df))

  def sampler(n, rng):
    z_NxD = rng.standard_normal((n, d)) @ chol_DxD.T
    scale_Nx1 = np.sqrt(rng.chisquare(df, size=(n, 1)) / df)
    xy_NxD = z_NxD / scale_Nx1
    return xy_NxD[:, :dim_x], xy_NxD[:, dim_x:]

  return Task(f"student-t-{dim_x}x{dim_y}-df{df:g}-rho{rho:g}", dim_x, dim_y,
              mi, sampler)


def signed_power(a, power: float = 1.5):
  """a -> sign(a) |a|^power, elementwise (power 1.5: a sqrt|a|); invertible."""
  return np.sign(a) * np.abs(a) ** power


def half_cube(task: Task) -> Task:
  """x -> x sqrt|x| and y -> y sqrt|y| on every coordinate ("half-cube" of
  Czyz et al. 2023); MI unchanged. Tails get heavier (|x|^1.5)."""
  return transformed(task, signed_power, signed_power,
                     name=f"{task.name}-halfcube")


def spiral_map(a_NxD, speed: float = 1.0 / 3.0):
  """Rotates the first two coordinates by the angle speed * |a|^2.

  The "spiral" diffeomorphism of Czyz et al. 2023 (a rotation whose angle
  depends on the norm). A rotation keeps |a|, so the angle is known from the
  output and the map is inverted by `spiral_map(b, -speed)`: invertible,
  hence MI-preserving. Needs at least 2 dimensions.
  """
  a_NxD = np.asarray(a_NxD, np.float64)
  if a_NxD.shape[1] < 2:
    raise ValueError("spiral needs at least 2 dimensions.")
  theta_N = speed * np.sum(a_NxD**2, axis=1)
  c, s = np.cos(theta_N), np.sin(theta_N)
  out = a_NxD.copy()
  out[:, 0] = c * a_NxD[:, 0] - s * a_NxD[:, 1]
  out[:, 1] = s * a_NxD[:, 0] + c * a_NxD[:, 1]
  return out


def spiral(task: Task, speed: float = 1.0 / 3.0) -> Task:
  """The spiral map (`spiral_map`) applied to x and y; MI unchanged."""
  f = lambda a: spiral_map(a, speed)
  return transformed(task, f, f, name=f"{task.name}-spiral")


def issue_table() -> list:
  """The seven rows of issue 9's table plus a spiral row, N = 5,000 in the
  benchmark; reference figures are given beside them there."""
  gauss1 = correlated_gaussian(1, rho=0.75)
  student = student_t(5, 5, df=2.0, rho=0.0)
  return [
      dataclasses.replace(gauss1, name="gaussian-1d-rho0.75"),
      half_cube(dataclasses.replace(gauss1, name="gaussian-1d-rho0.75")),
      dense_gaussian(5, 5, correlation=0.5),
      dense_gaussian(25, 25, correlation=0.5),
      sparse_gaussian(25, 25, n_pairs=2, rho=0.8),
      student,
      asinh(student),
      spiral(correlated_gaussian(3, rho=0.75)),
  ]


def heavy_tail_grid(dfs=(1, 2, 3, 5), dims=(1, 2, 5)) -> list:
  """Student-t pairs (identity dispersion) of df x dims, each with and without
  asinh on every coordinate."""
  out = []
  for df in dfs:
    for d in dims:
      t = student_t(d, d, df=float(df), rho=0.0)
      out += [t, asinh(t)]
  return out
