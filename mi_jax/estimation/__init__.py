"""Estimating mutual information between two samples.

  gaussian_mi, ksg_mi    classical baselines (Gaussian/CCA closed form, KSG)
  tasks                  synthetic tasks with known MI
"""

from mi_jax.estimation import tasks
from mi_jax.estimation._classical import canonical_correlations
from mi_jax.estimation._classical import gaussian_mi
from mi_jax.estimation._classical import ksg_mi
