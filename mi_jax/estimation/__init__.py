"""Estimating mutual information between two samples.

  estimate(x, y, bound=..., critic=...)   neural estimate, held-out read-out
  EstimateResult                          its result (value, SE, curves, flags)
  NeuralEstimator, GaussianEstimator,     objects with .estimate(X, Y) -> float
  KSGEstimator                            for benchmark harnesses
  gaussian_mi, ksg_mi                     classical baselines (CCA, KSG)
  tasks                                   synthetic tasks with known MI
"""

from mi_jax.estimation import tasks
from mi_jax.estimation._classical import canonical_correlations
from mi_jax.estimation._classical import gaussian_mi
from mi_jax.estimation._classical import ksg_mi
from mi_jax.estimation._estimators import GaussianEstimator
from mi_jax.estimation._estimators import KSGEstimator
from mi_jax.estimation._estimators import NeuralEstimator
from mi_jax.estimation._neural import EstimateResult
from mi_jax.estimation._neural import estimate
from mi_jax.estimation._objective import make_objective
