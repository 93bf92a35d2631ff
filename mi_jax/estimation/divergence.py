"""Two-sample divergences: KL(P || Q), JS and Pearson chi^2 from x ~ P, y ~ Q.

A critic T (a small MLP on one sample) is trained to maximise a variational
lower bound on the divergence, with the bounds of `mi_jax.bounds` applied to
the row of scores [T(x_1..x_N), T(y_1..y_M)] whose positives are the P
samples (Nguyen, Wainwright & Jordan 2010; Nowozin, Cseke & Tomioka,
"f-GAN", NeurIPS 2016; Belghazi et al., "MINE", ICML 2018):

  kind "kl",  bound "dv":   KL >= E_P[T] - log E_Q[e^T]           (Donsker-Varadhan)
  kind "kl",  bound "nwj":  KL >= E_P[T] - e^{-1} E_Q[e^T]        (NWJ)
  kind "js",  bound "jsd":  2 JS - 2 log 2 >= E_P[-sp(-T)] - E_Q[sp(T)]
                            (the GAN discriminator's objective; JS in nats,
                            JS <= log 2, reported as JS itself)
  kind "chi2":              chi^2(P || Q) = E_Q[(p/q - 1)^2]
                            >= E_P[T] - E_Q[T + T^2 / 4]          (f-GAN, Pearson)

The samples are split into a training part and a held-out part (the same
fraction of each sample); the critic is trained full-batch with Adam on the
training part and the bound is read out once on the held-out part, so the
estimate is not inflated by the critic's fit to its own training samples.
Also reported: the balanced held-out accuracy of the classifier
"log p/q > 0" read from T (P vs Q), the "held-out discriminator" statistic
(0.5 when P = Q).
"""

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax import bounds

KINDS = {"kl": ("dv", "nwj"), "js": ("jsd",), "chi2": ("chi2",)}


@dataclasses.dataclass(frozen=True)
class DivergenceResult:
  """`value`: the held-out estimate (nats for KL / JS); `train_value`: the
  bound on the training part at the end; `heldout_accuracy`: balanced
  accuracy on the held-out samples of the classifier "log p/q > 0", with
  log p/q read from T at the bound's optimum (0.5 when P = Q)."""
  value: float
  train_value: float
  heldout_accuracy: float
  kind: str
  bound: str
  n_train: int
  n_heldout: int


class _Critic(nnx.Module):
  """T(v) = MLP(v), ReLU, scalar output."""

  def __init__(self, dim: int, hidden: Sequence[int], *, rngs: nnx.Rngs):
    dims = (dim, *hidden, 1)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, v_NxD):
    h = v_NxD
    for layer in self.layers[:-1]:
      h = jax.nn.relu(layer(h))
    return self.layers[-1](h)[:, 0]


def chi2_bound(scores, mask):
  """Pearson chi^2 lower bound (f-GAN, Nowozin et al. 2016):

    chi^2(P || Q) >= E_P[T] - E_Q[T + T^2 / 4],   tight at T* = 2 (p/q - 1).

  `scores` [1, N + M], `mask` marks the P entries.
  """
  s = scores.astype(jnp.float32)
  pos = mask.astype(jnp.float32)
  neg = 1.0 - pos
  return (jnp.sum(s * pos) / jnp.sum(pos)
          - jnp.sum((s + 0.25 * s * s) * neg) / jnp.sum(neg))


def _bound_value(bound: str, scores_1xK, mask_1xK):
  if bound == "chi2":
    return chi2_bound(scores_1xK, mask_1xK)
  value = bounds.get(bound)(scores_1xK, mask=mask_1xK)
  if bound == "jsd":  # 2 JS - 2 log 2 -> JS
    value = 0.5 * value + jnp.log(2.0)
  return value


def _scores(critic, x_NxD, y_MxD):
  scores_1xK = jnp.concatenate([critic(x_NxD), critic(y_MxD)])[None, :]
  mask_1xK = (jnp.arange(scores_1xK.shape[1]) < x_NxD.shape[0])[None, :]
  return scores_1xK, mask_1xK


@functools.partial(jax.jit, static_argnames=("graphdef", "bound", "steps",
                                             "lr"))
def _train(graphdef, params, x_NxD, y_MxD, *, bound, steps, lr):
  tx = optax.adam(lr)

  def loss(p):
    return -_bound_value(bound, *_scores(nnx.merge(graphdef, p), x_NxD, y_MxD))

  def body(carry, _):
    p, opt_state = carry
    value, grad = jax.value_and_grad(loss)(p)
    updates, opt_state = tx.update(grad, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), -value

  (params, _), curve = jax.lax.scan(body, (params, tx.init(params)), None,
                                    length=steps)
  return params, curve


@functools.partial(jax.jit, static_argnames=("graphdef", "bound"))
def _readout(graphdef, params, x_NxD, y_MxD, *, bound):
  critic = nnx.merge(graphdef, params)
  scores_1xK, mask_1xK = _scores(critic, x_NxD, y_MxD)
  t = scores_1xK[0]
  n = x_NxD.shape[0]
  # log p/q estimated from T at each bound's optimum: DV T - log E_Q e^T,
  # NWJ T - 1, JS T, chi^2 log(1 + T/2) (> 0 iff T > 0).
  if bound == "dv":
    t = t - jax.scipy.special.logsumexp(t[n:]) + jnp.log(t.shape[0] - n)
  elif bound == "nwj":
    t = t - 1.0
  acc = 0.5 * (jnp.mean(t[:n] > 0) + jnp.mean(t[n:] <= 0))
  return _bound_value(bound, scores_1xK, mask_1xK), acc


def estimate_divergence(x_NxD, y_MxD, *, kind: str = "kl", bound: str | None = None,
               hidden: Sequence[int] = (64, 64), steps: int = 1000,
               lr: float = 1e-3, heldout: float = 0.5,
               standardize: bool = True, seed: int = 0) -> DivergenceResult:
  """Estimates D(P || Q) from samples x ~ P and y ~ Q (see the module doc).

  Args:
    x_NxD: samples of P; y_MxD: samples of Q (same width D).
    kind: "kl", "js" or "chi2".
    bound: for "kl": "dv" (default) or "nwj"; "js": "jsd"; "chi2": "chi2".
    hidden: the critic MLP's hidden widths.
    steps: full-batch Adam steps on the training part.
    lr: Adam learning rate.
    heldout: fraction of each sample held out for the read-out.
    standardize: z-score both samples with the pooled training statistics
      (divergences are invariant to an invertible map applied to both).
    seed: seed of the split and of the critic's initialisation.

  Returns:
    A `DivergenceResult`.
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
  bound = bound or KINDS[kind][0]
  if bound not in KINDS[kind]:
    raise ValueError(f"kind {kind!r} takes bound in {KINDS[kind]}, got "
                     f"{bound!r}")
  x = np.asarray(x_NxD, np.float32)
  y = np.asarray(y_MxD, np.float32)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError("x and y must be 2-D [N, D] and [M, D] with the same D; "
                     f"got {x.shape} and {y.shape} (reshape(-1, 1) a scalar)")
  if not 0.0 < heldout < 1.0:
    raise ValueError(f"heldout must be in (0, 1), got {heldout}")
  rng = np.random.default_rng(seed)
  px, py = rng.permutation(len(x)), rng.permutation(len(y))
  nx, ny = int(len(x) * (1 - heldout)), int(len(y) * (1 - heldout))
  if min(nx, ny, len(x) - nx, len(y) - ny) < 2:
    raise ValueError("too few samples: need at least 2 per sample in both "
                     f"the training and the held-out part (N={len(x)}, "
                     f"M={len(y)}, heldout={heldout})")
  x_tr, x_te = x[px[:nx]], x[px[nx:]]
  y_tr, y_te = y[py[:ny]], y[py[ny:]]
  if standardize:
    pooled = np.concatenate([x_tr, y_tr])
    mu, sd = pooled.mean(0), pooled.std(0) + 1e-6
    x_tr, x_te, y_tr, y_te = [(a - mu) / sd for a in (x_tr, x_te, y_tr, y_te)]
  critic = _Critic(x.shape[1], tuple(hidden), rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(critic)
  params, curve = _train(graphdef, params, jnp.asarray(x_tr),
                         jnp.asarray(y_tr), bound=bound, steps=int(steps),
                         lr=float(lr))
  value, acc = _readout(graphdef, params, jnp.asarray(x_te),
                        jnp.asarray(y_te), bound=bound)
  return DivergenceResult(
      value=float(value), train_value=float(curve[-1]),
      heldout_accuracy=float(acc), kind=kind, bound=bound, n_train=nx + ny,
      n_heldout=len(x) + len(y) - nx - ny)


def gaussian_kl(mu_p, cov_p, mu_q, cov_q) -> float:
  """Closed form KL(N(mu_p, cov_p) || N(mu_q, cov_q)) in nats (float64):

    0.5 [tr(S_q^-1 S_p) + (mu_q - mu_p)^T S_q^-1 (mu_q - mu_p) - d
         + log det S_q - log det S_p]
  """
  mu_p, mu_q = np.asarray(mu_p, np.float64), np.asarray(mu_q, np.float64)
  cov_p, cov_q = np.asarray(cov_p, np.float64), np.asarray(cov_q, np.float64)
  inv_q = np.linalg.inv(cov_q)
  diff = mu_q - mu_p
  return float(0.5 * (np.trace(inv_q @ cov_p) + diff @ inv_q @ diff
                      - len(mu_p) + np.linalg.slogdet(cov_q)[1]
                      - np.linalg.slogdet(cov_p)[1]))
