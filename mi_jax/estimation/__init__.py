"""Estimating mutual information between two samples.

  estimate(x, y, bound=..., critic=...)   neural estimate, held-out read-out
  EstimateResult                          its result (value, SE, curves, flags)
  NeuralEstimator, GaussianEstimator,     objects with .estimate(X, Y) -> float
  KSGEstimator                            for benchmark harnesses
  gaussian_mi, ksg_mi                     classical baselines (CCA, KSG)
  tasks                                   synthetic tasks with known MI
  make_objective, make_critic_model,      the estimator's pieces, for
  loss_fn, CriticModel, EmaState          mi_jax.training.make_train_step
  estimate_divergence(x, y, kind=kl|js|chi2) two-sample divergences (DV, NWJ, JSD bounds)
  discrete_mi, discrete_entropy           plug-in / Miller-Madow for discrete data
"""

from mi_jax.estimation import tasks
from mi_jax.estimation._classical import canonical_correlations
from mi_jax.estimation._classical import gaussian_mi
from mi_jax.estimation._classical import ksg_mi
from mi_jax.estimation._estimators import GaussianEstimator
from mi_jax.estimation._estimators import KSGEstimator
from mi_jax.estimation._estimators import NeuralEstimator
from mi_jax.estimation._neural import FLAGS
from mi_jax.estimation._neural import IMPLAUSIBLE
from mi_jax.estimation._neural import EstimateResult
from mi_jax.estimation._neural import estimate
from mi_jax.estimation._neural import make_critic_model
from mi_jax.estimation._objective import CriticModel
from mi_jax.estimation._objective import EmaState
from mi_jax.estimation._objective import Objective
from mi_jax.estimation._objective import loss_fn
from mi_jax.estimation._objective import make_objective
from mi_jax.estimation import divergence
from mi_jax.estimation.discrete import discrete_entropy
from mi_jax.estimation.discrete import discrete_mi
from mi_jax.estimation.divergence import DivergenceResult
from mi_jax.estimation.divergence import estimate_divergence
from mi_jax.estimation.divergence import gaussian_kl
