"""`lax.conv_general_dilated` whose gradients XLA:CPU also runs fast inside loops.

On XLA:CPU (jax 0.10) a convolution's gradients, as JAX's transpose rules
emit them, have non-canonical dimension labels (`f01b_i01o->01bf` for the
kernel gradient, `b01f_01oi->b01f` for the input gradient). Outside a loop
XLA rewrites them into its fast (Eigen) convolution; inside a `while` body
(`lax.scan`, `fori_loop`) it does not, and falls back to a naive loop nest:
a DIM training step ran ~6x slower inside `lax.scan` than called once per
step, a two-layer conv net ~17x (`experiments/benchmarks/conv_in_scan.py`;
jax-ml/jax#12868 reports the same family). Partial unrolling does not help:
any loop body is affected.

`conv_general_dilated` here computes the same convolution forward and
writes both gradients as channel-last convolutions XLA:CPU recognises:

  input grad:  dX = conv(dilate_s(dY), flip(W) with in/out swapped),
               padding (K - 1 - lo, S - 1 - (S_y - 1) s + lo) per spatial dim
  kernel grad: dW = conv(X^T, dY^T) with the batch as the contracted
               feature axis, X's channels as the batch, rhs dilation s,
               padding (lo, K + (S_y - 1) s - S - lo) per spatial dim

(S: input size, K: kernel size, s: stride, lo: low padding, S_y: output
size). Only on the CPU platform (`lax.platform_dependent`); elsewhere the
gradients are JAX's own. Channel-last convolutions without dilation or
feature groups take this path; any other call is `lax.conv_general_dilated`
unchanged. Drop-in for `nnx.Conv(..., conv_general_dilated=...)`; `Conv` is
`nnx.Conv` with it.
"""
import functools
from typing import Sequence

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp


def _channel_last_specs(ndim: int) -> tuple:
  spatial = tuple(range(1, ndim - 1))
  lhs = (0, ndim - 1) + spatial
  rhs = (ndim - 1, ndim - 2) + tuple(range(ndim - 2))
  return lhs, rhs, lhs


def _is_channel_last(dimension_numbers, ndim: int) -> bool:
  if dimension_numbers is None:
    return False
  dn = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
  return (dn.lhs_spec, dn.rhs_spec, dn.out_spec) == _channel_last_specs(ndim)


def _all_ones(values) -> bool:
  return values is None or all(v == 1 for v in values)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides: tuple, pads: tuple, precision):
  return _forward(x, w, strides, pads, precision)


def _forward(x, w, strides, pads, precision):
  specs = _channel_last_specs(x.ndim)
  return lax.conv_general_dilated(x, w, strides, pads,
                                  dimension_numbers=lax.ConvDimensionNumbers(*specs),
                                  precision=precision)


def _fwd(x, w, strides, pads, precision):
  return _forward(x, w, strides, pads, precision), (x, w)


def _canonical_grads(x, w, dy, strides, pads, precision):
  """(dX, dW) as channel-last forward convolutions (module docstring)."""
  n_sp = x.ndim - 2
  dn = lax.ConvDimensionNumbers(*_channel_last_specs(x.ndim))
  sizes, kernel = x.shape[1:-1], w.shape[:n_sp]
  out_sizes = dy.shape[1:-1]
  # Input gradient: the transposed convolution, written forward.
  w_flip = jnp.flip(w, axis=tuple(range(n_sp)))
  w_swap = jnp.swapaxes(w_flip, -1, -2)  # [*K, O, C]
  pads_x = tuple((k - 1 - lo, s_in - 1 - (s_out - 1) * st + lo)
                 for k, (lo, _), s_in, s_out, st
                 in zip(kernel, pads, sizes, out_sizes, strides))
  dx = lax.conv_general_dilated(dy, w_swap, (1,) * n_sp, pads_x,
                                lhs_dilation=strides, dimension_numbers=dn,
                                precision=precision)
  # Kernel gradient: channels of x as the batch, the batch as the feature.
  x_t = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))  # [C, *S, N]
  dy_t = jnp.moveaxis(dy, 0, -2)  # [*S_y, N, O]
  pads_w = []
  for axis, (k, (lo, _), s_in, s_out, st) in enumerate(
      zip(kernel, pads, sizes, out_sizes, strides)):
    hi = k + (s_out - 1) * st - s_in - lo
    if hi < 0:  # Rows the forward pass never read.
      x_t = lax.slice_in_dim(x_t, 0, s_in + hi, axis=axis + 1)
      hi = 0
    pads_w.append((lo, hi))
  dw_t = lax.conv_general_dilated(x_t, dy_t, (1,) * n_sp, tuple(pads_w),
                                  rhs_dilation=strides, dimension_numbers=dn,
                                  precision=precision)  # [C, *K, O]
  dw = jnp.moveaxis(dw_t, 0, -2)
  return dx.astype(x.dtype), dw.astype(w.dtype)


def _bwd(strides, pads, precision, residuals, dy):
  x, w = residuals

  def jax_grads(x, w, dy):
    _, vjp = jax.vjp(lambda a, b: _forward(a, b, strides, pads, precision), x, w)
    return vjp(dy)

  return lax.platform_dependent(
      x, w, dy,
      cpu=lambda a, b, g: _canonical_grads(a, b, g, strides, pads, precision),
      default=jax_grads)


_conv.defvjp(_fwd, _bwd)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None, **kwargs):
  """`lax.conv_general_dilated` with loop-friendly gradients on CPU (module docstring)."""
  plain = (not _is_channel_last(dimension_numbers, lhs.ndim)
           or not _all_ones(lhs_dilation) or not _all_ones(rhs_dilation)
           or feature_group_count != 1 or batch_group_count != 1
           or preferred_element_type is not None
           or any(v is not None for v in kwargs.values()))
  if plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type, **kwargs)
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides,
                               padding)
  else:
    pads = padding
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  return _conv(lhs, rhs, strides, pads, precision)


Conv = functools.partial(nnx.Conv, conv_general_dilated=conv_general_dilated)
Conv.__doc__ = ("`nnx.Conv` computing with `conv_op.conv_general_dilated` "
                "(fast gradients inside `lax.scan` on XLA:CPU).")
