"""Exact plug-in mutual information of discrete variables, Miller-Madow corrected.

For N paired symbols (x_i, y_i) with empirical frequencies p(x), p(y), p(x, y):

  H_plugin(X)   = - sum_x p(x) log p(x)
  H_MM(X)       = H_plugin(X) + (m_X - 1) / (2 N)     (Miller 1955; Madow)
  I_plugin(X;Y) = H(X) + H(Y) - H(X, Y)
  I_MM(X;Y)     = I_plugin + (m_X + m_Y - m_XY - 1) / (2 N)

where m_X, m_Y, m_XY are the numbers of occupied bins (symbols seen at
least once). The plug-in value is the MI of the empirical distribution
itself (exact, float64); Miller-Madow removes the first-order bias of each
entropy, O(m / N). Reference values in tests; nats.

A symbol is a scalar (any hashable NumPy dtype) or a row of a 2-D array
(the row is the joint symbol of several variables).
"""

import numpy as np


def _codes(v, name: str) -> np.ndarray:
  """Integer codes 0..m-1 of the symbols of `v` ([N] or [N, k] rows)."""
  v = np.asarray(v)
  if v.ndim == 1:
    return np.unique(v, return_inverse=True)[1].reshape(-1)
  if v.ndim == 2:
    return np.unique(v, axis=0, return_inverse=True)[1].reshape(-1)
  raise ValueError(f"{name} must be [N] symbols or [N, k] rows of symbols, "
                   f"got shape {v.shape}")


def _plugin_entropy(codes_N: np.ndarray) -> tuple[float, int]:
  counts = np.bincount(codes_N).astype(np.float64)
  counts = counts[counts > 0]
  p = counts / counts.sum()
  return float(-np.sum(p * np.log(p))), len(counts)


def _check_correction(correction):
  if correction not in (None, "miller_madow"):
    raise ValueError("correction must be None or 'miller_madow', got "
                     f"{correction!r}")


def discrete_entropy(x, *, correction: str | None = None) -> float:
  """H(X) in nats from samples; `correction="miller_madow"` adds (m - 1)/(2N)."""
  _check_correction(correction)
  codes = _codes(x, "x")
  if len(codes) == 0:
    raise ValueError("need at least one sample")
  h, m = _plugin_entropy(codes)
  return h + (m - 1) / (2 * len(codes)) if correction else h


def discrete_mi(x, y, *, correction: str | None = "miller_madow") -> float:
  """I(X; Y) in nats from paired discrete samples (see the module doc).

  Args:
    x, y: [N] symbols or [N, k] rows (joint symbols), paired by index.
    correction: "miller_madow" (default) or None for the plain plug-in.
  """
  _check_correction(correction)
  cx, cy = _codes(x, "x"), _codes(y, "y")
  if len(cx) != len(cy):
    raise ValueError(f"x and y must be paired: {len(cx)} vs {len(cy)} samples")
  if len(cx) == 0:
    raise ValueError("need at least one sample")
  hx, mx = _plugin_entropy(cx)
  hy, my = _plugin_entropy(cy)
  hxy, mxy = _plugin_entropy(cx * (int(cy.max()) + 1) + cy)
  mi = hx + hy - hxy
  if correction:
    mi += (mx + my - mxy - 1) / (2 * len(cx))
  return mi
