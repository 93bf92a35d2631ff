"""InfoNCE with a shared encoder and inner-product critic is metric learning.

Tschannen et al., ICLR 2020, §4. With one encoder g for both views and the
inner-product critic, scores s_ij = g(x_i)^T g(y_j) on a batch of K pairs, and

  I_NCE = 1/K sum_i log( exp(s_ii) / (1/K sum_j exp(s_ij)) )
  L_kpair = 1/K sum_i log(1 + sum_{j != i} exp(s_ij - s_ii))  (Sohn 2016, eq. 3)

Since log(1 + sum_{j != i} exp(s_ij - s_ii)) = logsumexp_j s_ij - s_ii:

  -I_NCE = L_kpair - log K                                       (exact)

For K = 2 the K-pair loss is the mean soft-margin triplet loss
softplus(s(a, n) - s(a, p)) over the two anchors, so -I_NCE = L_triplet - log 2;
with unit-norm embeddings and d = ||a - b||^2 (s = 1 - d / 2) the triplet loss
is softplus((d(a, p) - d(a, n)) / 2).

The references below are plain NumPy in float64; the library side is
`mi_jax.bounds.infonce` on `mi_jax.critics` inner-product scores, jitted.

  .venv/bin/python -m pytest -q tests/test_metric_learning.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax import bounds, critics, encoders


def _kpair_loss(za_KxD, zb_KxD):
  """Multi-class K-pair loss (Sohn 2016) in NumPy float64."""
  za, zb = np.float64(za_KxD), np.float64(zb_KxD)
  k = za.shape[0]
  s_KxK = za @ zb.T
  total = 0.0
  for i in range(k):
    neg = sum(np.exp(s_KxK[i, j] - s_KxK[i, i]) for j in range(k) if j != i)
    total += np.log1p(neg)
  return total / k


def _triplet_loss(za_2xD, zb_2xD):
  """Soft-margin triplet loss, inner-product similarity, both anchors."""
  za, zb = np.float64(za_2xD), np.float64(zb_2xD)
  losses = []
  for i, j in ((0, 1), (1, 0)):
    s_pos, s_neg = za[i] @ zb[i], za[i] @ zb[j]
    losses.append(np.log1p(np.exp(s_neg - s_pos)))
  return np.mean(losses)


def _triplet_loss_euclidean(za_2xD, zb_2xD):
  """Soft-margin triplet loss on squared distances of unit-norm embeddings."""
  za, zb = np.float64(za_2xD), np.float64(zb_2xD)
  losses = []
  for i, j in ((0, 1), (1, 0)):
    d_pos = np.sum((za[i] - zb[i]) ** 2)
    d_neg = np.sum((za[i] - zb[j]) ** 2)
    losses.append(np.log1p(np.exp((d_pos - d_neg) / 2)))
  return np.mean(losses)


def _shared_encoder_scores(k, seed, *, normalize=False):
  """Returns (za_KxD, zb_KxD, I_NCE) from one shared MLP + inner product."""
  rngs = nnx.Rngs(seed)
  g = encoders.MLP(12, hidden=(16,), out_dim=8, rngs=rngs)
  critic = critics.make("inner_product", 8, 8, rngs=rngs)
  kx, ky = jax.random.split(jax.random.key(seed))
  x_KxI = jax.random.normal(kx, (k, 12))
  y_KxI = x_KxI + 0.5 * jax.random.normal(ky, (k, 12))

  @jax.jit
  def run(x_KxI, y_KxI):
    za_KxD, zb_KxD = g(x_KxI), g(y_KxI)
    if normalize:
      za_KxD = za_KxD / jnp.linalg.norm(za_KxD, axis=-1, keepdims=True)
      zb_KxD = zb_KxD / jnp.linalg.norm(zb_KxD, axis=-1, keepdims=True)
    return za_KxD, zb_KxD, bounds.infonce(critic(za_KxD, zb_KxD))

  return run(x_KxI, y_KxI)


@pytest.mark.parametrize("k", [3, 8, 64])
def test_infonce_is_log_k_minus_kpair_loss(k):
  za, zb, i_nce = _shared_encoder_scores(k, seed=k)
  expected = np.log(k) - _kpair_loss(za, zb)
  np.testing.assert_allclose(float(i_nce), expected, rtol=1e-5, atol=1e-5)
  # The identity is not vacuous: the loss differs from log K.
  assert abs(_kpair_loss(za, zb) - np.log(k)) > 1e-3


def test_k2_infonce_is_log2_minus_soft_margin_triplet():
  za, zb, i_nce = _shared_encoder_scores(2, seed=7)
  np.testing.assert_allclose(-float(i_nce), _triplet_loss(za, zb) - np.log(2),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(_triplet_loss(za, zb), _kpair_loss(za, zb),
                             rtol=1e-12)


def test_k2_unit_norm_triplet_on_squared_distances():
  za, zb, i_nce = _shared_encoder_scores(2, seed=11, normalize=True)
  np.testing.assert_allclose(
      -float(i_nce), _triplet_loss_euclidean(za, zb) - np.log(2),
      rtol=1e-5, atol=1e-5)
