"""Estimator objects with `.estimate(X, Y) -> float`, for benchmark harnesses.

The protocol of scikit-learn-style MI benchmarks (e.g. the estimators of the
`bmi` package of Czyz et al. 2023, "Beyond normal"): construct with the
hyper-parameters, call `estimate(x_NxDx, y_NxDy)` to get nats as a float.

  NeuralEstimator(bound="smile", critic="separable", ...)  mi_jax.estimate
  GaussianEstimator()                                      CCA closed form
  KSGEstimator(k=3)                                        Kraskov et al. 2004
"""

import dataclasses

from mi_jax.estimation import _classical
from mi_jax.estimation import _neural


class NeuralEstimator:
  """Neural variational estimator; `estimate` returns the held-out value.

  Keyword arguments are those of `mi_jax.estimate` (bound, critic,
  batch_size, steps, lr, seed, holdout, ...). The full `EstimateResult` of the
  last call (curves, standard error, flags) is kept in `last_result`.
  """

  def __init__(self, **kwargs):
    self.params = dict(kwargs)
    self.last_result = None

  def estimate(self, x, y) -> float:
    """I(X; Y) in nats from paired samples `x_NxDx`, `y_NxDy`."""
    self.last_result = _neural.estimate(x, y, **self.params)
    return float(self.last_result.mi)

  def parameters(self) -> dict:
    """Hyper-parameters, for the benchmark's records."""
    return dict(self.params)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
    return f"NeuralEstimator({args})"


@dataclasses.dataclass
class GaussianEstimator:
  """I = -1/2 sum_i log(1 - rho_i^2) over canonical correlations (exact if Gaussian)."""

  def estimate(self, x, y) -> float:
    """I(X; Y) in nats under a joint Gaussian fit."""
    return _classical.gaussian_mi(x, y)

  def parameters(self) -> dict:
    return {}


@dataclasses.dataclass
class KSGEstimator:
  """Kraskov-Stoegbauer-Grassberger estimator 1 (max-norm, k neighbours)."""
  k: int = 3
  standardize: bool = True
  seed: int = 0

  def estimate(self, x, y) -> float:
    """I(X; Y) in nats by k-nearest-neighbour counts."""
    return _classical.ksg_mi(x, y, k=self.k, standardize=self.standardize,
                             seed=self.seed)

  def parameters(self) -> dict:
    return dataclasses.asdict(self)
