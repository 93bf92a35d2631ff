"""Variational MI bounds on a dense score matrix `scores_BxC`.

Every bound is a pure function `fn(scores, mask=None, **options)` returning a
float32 scalar in nats (MINE also returns its moving-average state).
`scores[i, j] = f(a_i, b_j)`; `mask[i, j]` marks positive pairs (default: the
diagonal, B == C); every unmasked entry is a negative. Expectations are plain
averages: E_P over the positive entries, E_Q over the negative entries, so a
mask needs at least one positive and one negative (else the value is NaN).
Inputs of any floating dtype are computed in float32; values and gradients
are finite for any finite scores.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mi_jax.bounds import _common
from mi_jax.bounds._common import masked_logmeanexp, masked_mean

sg = jax.lax.stop_gradient


def infonce(scores, mask=None):
  """InfoNCE / CPC bound (van den Oord et al. 2018; Poole et al. 2019).

  Diagonal mask: I_NCE = mean_i [s_ii - logsumexp_j s_ij] + log B  (<= log B).

  General mask: each positive (i, j) is contrasted against the candidates
  C_ij = {j} + negatives of row i (other positives of row i are left out):
    I_NCE = mean over positives (i, j) of
            [s_ij - logsumexp_{k in C_ij} s_ik + log |C_ij|],
  so each term is <= log |C_ij|. This covers DIM local pairs (rows =
  (image, location), columns = images, one positive per row) and rows with
  several positives (each positive vs. the row's negatives).

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.

  Returns:
    float32 scalar, nats.
  """
  s, pos, neg = _common.prepare(scores, mask)
  has_neg_B = jnp.any(neg, axis=1)
  n_neg_B = jnp.sum(neg, axis=1).astype(jnp.float32)
  neg_max_B = jnp.max(jnp.where(neg, s, -jnp.inf), axis=1)
  neg_max_B = sg(jnp.where(has_neg_B, neg_max_B, 0.0))
  # S_i = sum_{negatives k} exp(s_ik - neg_max_i)  (>= 1 when row has one).
  neg_sum_B = jnp.sum(
      jnp.exp(jnp.where(neg, s - neg_max_B[:, None], -jnp.inf)), axis=1)
  # Per candidate set C_ij: logsumexp = m_ij + log(e^{s_ij-m} + S_i e^{nmax-m}).
  m_BxC = sg(jnp.where(has_neg_B[:, None],
                       jnp.maximum(s, neg_max_B[:, None]), s))
  neg_part = jnp.where(
      has_neg_B[:, None],
      neg_sum_B[:, None] * jnp.exp(jnp.minimum(neg_max_B[:, None] - m_BxC, 0.)),
      0.0)
  lse_BxC = m_BxC + jnp.log(jnp.exp(s - m_BxC) + neg_part)  # s - m <= 0
  term_BxC = s - lse_BxC + jnp.log1p(n_neg_B)[:, None]
  return masked_mean(term_BxC, pos)


def tuba(scores, mask=None, *, log_baseline=0.0):
  """TUBA bound with log-baseline a (Poole et al. 2019; Nguyen et al. 2010).

    I_TUBA = 1 + E_P[f(a_i, b_j) - a_i] - E_Q[exp(f(a_i, b_j) - a_i)]

  `a` is a scalar or a per-row [B] array (a baseline that depends on a_i).
  The marginal term E_Q[e^(f - a)] is exact up to e^20 and grows
  logarithmically beyond it (`_common.capped_exp`), so the value and the
  gradient stay finite for any finite score.

  Learned baseline (Poole et al. 2019, section 2.2): the bound holds for any
  a(x_i); it is tightest at a(x) = log E_{p(y)}[e^{f(x, y)}], so a small
  network trained jointly with the critic on the same bound (as
  `mi_jax.estimate(bound="tuba")` does) makes it tight for every row.

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.
    log_baseline: scalar or [B] array, a.

  Returns:
    float32 scalar, nats.
  """
  s, pos, neg = _common.prepare(scores, mask)
  a = jnp.asarray(log_baseline, jnp.float32)
  if a.ndim == 1:
    if a.shape[0] != s.shape[0]:
      raise ValueError(f"log_baseline has shape {a.shape}; expected a scalar "
                       f"or one value per row ({s.shape[0]},).")
    a = a[:, None]
  elif a.ndim != 0:
    raise ValueError(f"log_baseline must be a scalar or [B], got {a.shape}.")
  shifted = s - a
  joint = masked_mean(shifted, pos)
  marg = _common.capped_exp(masked_logmeanexp(shifted, neg))
  return 1.0 + joint - marg


def nwj(scores, mask=None):
  """NWJ bound (Nguyen, Wainwright & Jordan 2010; Poole et al. 2019).

    I_NWJ = E_P[f] - e^{-1} E_Q[e^f]   (= TUBA with log-baseline a = 1)

  Tight at f* = 1 + log p(a, b) / (p(a) p(b)).

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.

  Returns:
    float32 scalar, nats.
  """
  return tuba(scores, mask, log_baseline=1.0)


def dv(scores, mask=None):
  """Donsker-Varadhan bound, MINE's value (Belghazi et al. 2018).

    I_DV = E_P[f] - log E_Q[e^f]
         = mean_{positives} s - (logsumexp_{negatives} s - log #negatives)

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.

  Returns:
    float32 scalar, nats.
  """
  s, pos, neg = _common.prepare(scores, mask)
  return masked_mean(s, pos) - masked_logmeanexp(s, neg)


def mine(scores, mask=None, *, ema=None, decay=0.99):
  """MINE: DV value, bias-corrected gradient (Belghazi et al. 2018).

  Value: exactly I_DV = E_P[f] - log E_Q[e^f].
  Gradient: grad E_P[f] - grad E_Q[e^f] / m_t, where m_t is the exponential
  moving average of E_Q[e^f] over steps,
    m_t = decay * m_{t-1} + (1 - decay) * E_Q[e^f]   (current batch included),
  i.e. the surrogate  sg(log E_Q[e^f]) + E_Q[e^f]/sg(m_t) - sg(E_Q[e^f]/m_t).

  The state is kept in log space so it cannot overflow: `ema` is log m_{t-1}
and the returned `new_ema` is log m_t. `ema=None` or a non-finite `ema`
(e.g. -inf, the "no average yet" value a train state starts from) starts
the average at the batch value and gives the plain DV gradient; because the
empty state is a value, not None, a compiled train step calls this function
once per step, with one code path. The gradient weight E_Q[e^f]/m_t is at
most 1/(1 - decay), so it stays finite.

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.
    ema: None or float32 scalar, log of the moving average (state in);
      non-finite means empty.
    decay: moving-average decay in [0, 1).

  Returns:
    (value, new_ema): float32 scalars; pass `new_ema` to the next call.
  """
  if isinstance(decay, (int, float)) and not 0.0 <= decay < 1.0:
    raise ValueError(f"decay must be in [0, 1), got {decay}.")
  s, pos, neg = _common.prepare(scores, mask)
  lme = masked_logmeanexp(s, neg)
  if ema is None:
    new_ema = sg(lme)
  else:
    ema = jnp.asarray(ema, jnp.float32)
    if ema.ndim != 0:
      raise ValueError(f"ema must be a scalar, got shape {ema.shape}.")
    decay = jnp.asarray(decay, jnp.float32)
    started = jnp.isfinite(ema)
    safe_ema = jnp.where(started, ema, 0.0)
    new_ema = sg(jnp.where(
        started,
        jnp.logaddexp(jnp.log(decay) + safe_ema, jnp.log1p(-decay) + lme),
        lme))
  ratio = jnp.exp(lme - new_ema)
  neg_term = sg(lme) + ratio - sg(ratio)
  return masked_mean(s, pos) - neg_term, new_ema


def _js_fgan(s, pos, neg):
  return (masked_mean(-jax.nn.softplus(-s), pos)
          - masked_mean(jax.nn.softplus(s), neg))


def jsd(scores, mask=None, *, readout=None, valid=None):
  """Jensen-Shannon bound in f-GAN form, as used by Deep InfoMax.

    I_JS = E_P[-sp(-T)] - E_Q[sp(T)],   sp(x) = log(1 + e^x)
  (Nowozin et al. 2016; Hjelm et al. 2019). Its optimum is T* = log p/(p_a p_b).

  "Train with JS, read out with a MI bound" (Poole et al. 2019, js_lower_bound;
  Song & Ermon 2020): with `readout` the returned value is the readout bound
  while the gradient is the gradient of I_JS (value = JS + sg(readout - JS)):
    readout="nwj": I_NWJ(T + 1) = 1 + E_P[T] - E_Q[e^T]  (tight at T*; note
                   the vbmi notebook reads out I_NWJ(T), which is low by 1/e),
    readout="dv":  I_DV(T) = E_P[T] - log E_Q[e^T].

  Args:
    scores: [B, C] floating scores T.
    mask: optional boolean [B, C] of positive pairs.
    readout: None (value I_JS, a JS divergence bound, not nats of MI), "nwj"
      or "dv".
    valid: optional boolean broadcastable to [B, C]; False entries (padding
      rows / columns of a padded graph batch) are neither positive nor
      negative, so they change neither the value nor the gradient.

  Returns:
    float32 scalar.
  """
  s, pos, neg = _common.prepare(scores, mask, valid)
  js = _js_fgan(s, pos, neg)
  if readout is None:
    return js
  if valid is not None:
    raise ValueError("jsd(valid=...) supports readout=None only.")
  if readout == "nwj":
    value = tuba(s, pos, log_baseline=0.0)
  elif readout == "dv":
    value = dv(s, pos)
  else:
    raise ValueError(f"readout must be None, 'nwj' or 'dv', got {readout!r}.")
  return js + sg(value - js)


def smile(scores, mask=None, *, clip=5.0, js_gradient=True):
  """SMILE bound (Song & Ermon 2020): DV with a clipped partition function.

    I_SMILE = E_P[f] - log E_Q[exp(clip(f, -tau, tau))]

  As in the authors' reference code (ermongroup/smile-mi-estimator) the value
  is I_SMILE and, by default, the gradient is that of the JS f-GAN bound
  (value = JS + sg(I_SMILE - JS)); `js_gradient=False` gives the gradient of
  I_SMILE itself (the paper's formula). clip=None: no clipping (plain DV).

  Args:
    scores: [B, C] floating scores.
    mask: optional boolean [B, C] of positive pairs.
    clip: tau > 0, or None.
    js_gradient: train with the JS gradient (reference code) or not.

  Returns:
    float32 scalar, nats.
  """
  if clip is not None and isinstance(clip, (int, float)) and clip <= 0:
    raise ValueError(f"clip must be positive or None, got {clip}.")
  s, pos, neg = _common.prepare(scores, mask)
  s_neg = s if clip is None else jnp.clip(s, -clip, clip)
  value = masked_mean(s, pos) - masked_logmeanexp(s_neg, neg)
  if not js_gradient:
    return value
  js = _js_fgan(s, pos, neg)
  return js + sg(value - js)


def _loo_logsumexp(s_BxC):
  """[i, j] -> log sum_{k != j} exp(s_ik), exactly (no cancellation).

  Relative to the row max m_i, the leave-one-out sum is an exclusive prefix
  sum plus an exclusive suffix sum of e_ik = exp(s_ik - m_i) (sums of
  non-negatives, >= 1 because the max term is kept). The max's own column is
  the logsumexp of the rest, computed separately.
  """
  c = s_BxC.shape[1]
  arg_B = jnp.argmax(s_BxC, axis=1)
  is_max_BxC = jnp.arange(c)[None, :] == arg_B[:, None]
  m_B = sg(jnp.max(s_BxC, axis=1))
  e_BxC = jnp.exp(s_BxC - m_B[:, None])
  pre = jnp.cumsum(e_BxC, axis=1) - e_BxC
  suf = jnp.cumsum(e_BxC[:, ::-1], axis=1)[:, ::-1] - e_BxC
  loo_sum = jnp.where(is_max_BxC, 1.0, pre + suf)
  rest_B = _common.masked_logsumexp(s_BxC, ~is_max_BxC, axis=1)
  return jnp.where(is_max_BxC, rest_B[:, None], m_B[:, None] + jnp.log(loo_sum))


def interpolated(scores, mask=None, *, alpha=0.5, log_baseline=0.0):
  """Interpolated bound I_alpha of Poole et al. (2019), section 2.5.

  The baseline of row i interpolates the InfoNCE leave-one-out mean and a
  TUBA log-baseline a_i:
    m_ij  = log mean_{k != j} exp(s_ik)                 (leave-one-out)
    b_ij  = log(alpha * exp(m_ij) + (1 - alpha) * exp(a_i))
    I_alpha = 1 + mean_{i != j} [s_ii - b_ij]
                - mean_{i != j} exp(s_ij - b_ii)
  exactly as `interpolated_lower_bound` of the authors' vbmi notebook (their
  rows index y; here rows index a). alpha = 0 gives TUBA(a); alpha = 1 gives
  a leave-one-out InfoNCE-type bound (the marginal term is then exactly 1 and
  the value is <= log(B - 1)). Only the default diagonal mask is supported.
  The leave-one-out sums are exact (prefix + suffix sums, no cancellation).

  Args:
    scores: [B, B] floating scores, B >= 2.
    mask: must be None.
    alpha: interpolation weight in [0, 1] (scalar, may be traced).
    log_baseline: a, scalar or per-row [B].

  Returns:
    float32 scalar, nats.
  """
  if mask is not None:
    raise ValueError("interpolated supports only the default diagonal mask "
                     "(mask=None); use infonce/nwj/dv for general masks.")
  if isinstance(alpha, (int, float)) and not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
  s, pos, neg = _common.prepare(scores, None)
  b = s.shape[0]
  if b < 2:
    raise ValueError("interpolated needs at least 2 samples (B >= 2).")
  a = jnp.asarray(log_baseline, jnp.float32)
  if a.ndim not in (0, 1) or (a.ndim == 1 and a.shape[0] != b):
    raise ValueError(f"log_baseline must be a scalar or [{b}], got {a.shape}.")
  a_B = jnp.broadcast_to(a, (b,))
  alpha = jnp.asarray(alpha, jnp.float32)
  loo_BxB = _loo_logsumexp(s) - math.log(b - 1)
  base_BxB = _common.logaddexp(jnp.log(alpha) + loo_BxB,
                               jnp.log1p(-alpha) + a_B[:, None])
  base_diag_B = jnp.diagonal(base_BxB)
  marg = _common.capped_exp(
      masked_logmeanexp(s - base_diag_B[:, None], neg))
  joint = masked_mean(jnp.diagonal(s)[:, None] - base_BxB, neg)
  return 1.0 + joint - marg
