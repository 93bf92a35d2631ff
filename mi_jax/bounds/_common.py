"""Shared helpers of the bounds: input checks, masked reductions, safe exp.

Everything here works on float32 score matrices `scores_BxC` (B rows, C
columns) and boolean masks of the same shape. Excluded entries are dropped with
`-inf` / `jnp.where`, never by subtracting a constant, and every helper keeps
both its value and its gradient finite for finite inputs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# exp() is exact up to exp(_LOG_CAP) ~ 4.9e8; past it see `capped_exp`.
_LOG_CAP = 20.0

def prepare(scores, mask, valid=None):
  """Checks `scores` / `mask` at trace time and returns float32 scores + masks.

  Args:
    scores: [B, C] floating array, `scores[i, j] = f(a_i, b_j)`.
    mask: None (positives on the diagonal; needs B == C) or a boolean [B, C].
    valid: None, or a boolean array broadcastable to [B, C]; entries where it
      is False are neither positives nor negatives (padding).

  Returns:
    (scores_BxC float32, pos_BxC bool, neg_BxC bool).
  """
  scores = jnp.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(
        f"scores must be a 2-D [B, B'] matrix, got shape {scores.shape}.")
  if not jnp.issubdtype(scores.dtype, jnp.floating):
    raise ValueError(
        f"scores must be floating (float32/bfloat16/...), got {scores.dtype}.")
  b, c = scores.shape
  if b == 0 or c == 0:
    raise ValueError(f"scores must be non-empty, got shape {scores.shape}.")
  if mask is None:
    if b != c:
      raise ValueError(
          f"scores has shape {scores.shape}; the default mask (positives on "
          "the diagonal) needs a square matrix. Pass mask=[B, B'] boolean.")
    pos = jnp.eye(b, dtype=bool)
  else:
    pos = jnp.asarray(mask)
    if pos.dtype != jnp.bool_:
      raise ValueError(f"mask must be boolean, got dtype {pos.dtype}.")
    if pos.shape != scores.shape:
      raise ValueError(
          f"mask shape {pos.shape} must equal scores shape {scores.shape}.")
  if valid is None:
    return scores.astype(jnp.float32), pos, jnp.logical_not(pos)
  valid = jnp.broadcast_to(jnp.asarray(valid, bool), scores.shape)
  return (scores.astype(jnp.float32), pos & valid,
          jnp.logical_not(pos) & valid)


def masked_mean(x, mask, axis=None):
  """Mean of `x` over the entries where `mask` is True."""
  total = jnp.sum(jnp.where(mask, x, 0.0), axis=axis)
  count = jnp.sum(mask, axis=axis).astype(jnp.float32)
  return total / count


def masked_logsumexp(x, mask, axis=None):
  """log sum_{mask} exp(x) over `axis`; -inf (zero gradient) where empty."""
  x_masked = jnp.where(mask, x, -jnp.inf)
  m = jnp.max(x_masked, axis=axis, keepdims=True)
  m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
  e = jnp.exp(jnp.where(mask, x - m, -jnp.inf))
  s = jnp.sum(e, axis=axis)
  has = jnp.any(mask, axis=axis)
  m = jnp.squeeze(m, axis=axis) if axis is not None else jnp.reshape(m, ())
  lse = jnp.log(jnp.where(has, s, 1.0)) + m
  return jnp.where(has, lse, -jnp.inf)


def masked_logmeanexp(x, mask, axis=None):
  """log mean_{mask} exp(x) = logsumexp_{mask}(x) - log(#mask)."""
  count = jnp.sum(mask, axis=axis).astype(jnp.float32)
  return masked_logsumexp(x, mask, axis) - jnp.log(count)


def logaddexp(x, y):
  """log(e^x + e^y) with a zero (not NaN) gradient for a -inf argument."""
  m = jax.lax.stop_gradient(jnp.maximum(x, y))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  return m + jnp.log(jnp.exp(x - m) + jnp.exp(y - m))


def capped_exp(x):
  """exp(x) for x <= 20; e^20 (1 + log(1 + x - 20)) beyond: finite value AND gradient.

  The bounds that exponentiate a log-mean-exp (NWJ, TUBA, I_alpha) use it for
  their marginal term E_Q[e^f]. Below the cap it is exp(x) exactly. At x = 20
  the marginal term is already 4.9e8 nats, so the bound is far below any MI a
  score matrix can certify (the estimator flags such a value as diverged);
  beyond it the function keeps growing (continuous, monotone, derivative
  e^20 / (1 + x - 20) <= 4.9e8) instead of overflowing. Both the value
  (<= e^20 (1 + 89) in float32) and the gradient are finite for every finite
  x, so float32 / bfloat16 Adam second moments (g^2 <= 2.4e17) cannot
  overflow. (A cap on the value alone, with the uncapped gradient passed
  through, lets gradients reach e^88 and overflow Adam's second moment.)
  """
  x = jnp.asarray(x)
  cap = jnp.asarray(_LOG_CAP, x.dtype)
  excess = jnp.maximum(x - cap, 0.0)
  return jnp.exp(jnp.minimum(x, cap)) * (1.0 + jnp.log1p(excess))


def lookup(table: dict, name, message: str):
  """`table[name]`, or ValueError(message) for an unknown (or unhashable) name."""
  try:
    return table[name]
  except (KeyError, TypeError):
    raise ValueError(message) from None
