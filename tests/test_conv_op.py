"""`encoders.conv_op`: the same convolution and gradients as `lax`, loop-friendly on XLA:CPU."""
from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from mi_jax.encoders import conv_op

_DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}

# (input spatial size, kernel, stride, padding): odd sizes and strides that
# leave input rows unread (the kernel gradient's negative high padding).
_CASES = [
    ((9, 11), (3, 3), (1, 1), "SAME"),
    ((9, 11), (3, 2), (2, 3), "SAME"),
    ((10, 7), (4, 4), (2, 2), "SAME"),
    ((10, 9), (3, 3), (2, 2), "VALID"),
    ((12, 8), (5, 3), (3, 2), "VALID"),
    ((8, 8), (3, 3), (2, 1), ((2, 0), (1, 2))),
    ((13,), (4,), (3,), "SAME"),
    ((13,), (2,), (2,), "VALID"),
]


def _inputs(sizes, kernel, c_in=3, c_out=5, batch=4):
  kx, kw, kg = jax.random.split(jax.random.key(len(sizes) + sum(sizes)), 3)
  x = jax.random.normal(kx, (batch, *sizes, c_in))
  w = jax.random.normal(kw, (*kernel, c_in, c_out))
  return x, w, kg


@pytest.mark.parametrize("sizes,kernel,strides,padding", _CASES)
def test_value_and_gradients_equal_lax(sizes, kernel, strides, padding):
  x, w, kg = _inputs(sizes, kernel)
  dn = _DN[len(sizes)]

  def loss(conv, x, w):
    y = conv(x, w, strides, padding, dimension_numbers=dn)
    g = jax.random.normal(kg, y.shape)  # A cotangent that weights every output.
    return jnp.sum(y * g), y

  (_, y_ref), grads_ref = jax.jit(jax.value_and_grad(
      lambda x, w: loss(lax.conv_general_dilated, x, w), (0, 1),
      has_aux=True))(x, w)
  (_, y), grads = jax.jit(jax.value_and_grad(
      lambda x, w: loss(conv_op.conv_general_dilated, x, w), (0, 1),
      has_aux=True))(x, w)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  assert grads[0].shape == x.shape and grads[1].shape == w.shape
  for g, g_ref in zip(grads, grads_ref):
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


def test_gradients_inside_scan_equal_outside():
  x, w, _ = _inputs((10, 10), (4, 4))

  def loss(w):
    y = conv_op.conv_general_dilated(x, w, (2, 2), "SAME",
                                     dimension_numbers=_DN[2])
    return jnp.sum(jnp.tanh(y) ** 2)

  def step(w, _):
    return w - 0.1 * jax.grad(loss)(w), None

  scanned = jax.jit(lambda w: lax.scan(step, w, None, length=3)[0])(w)
  looped = w
  for _ in range(3):
    looped = jax.jit(step)(looped, None)[0]
  np.testing.assert_allclose(scanned, looped, rtol=1e-5, atol=1e-6)


def test_compiled_loop_body_has_only_canonical_convolutions():
  """Inside a scan the gradients are channel-last convolutions, not the
  `f01b_i01o->01bf` / `b01f_01oi->b01f` forms XLA:CPU runs as naive loops."""
  x, w, _ = _inputs((12, 12), (4, 4))
  w2 = jax.random.normal(jax.random.key(9), (3, 3, 5, 2))

  def make(conv):
    def loss(ws):
      h = jax.nn.relu(conv(x, ws[0], (2, 2), "SAME", dimension_numbers=_DN[2]))
      return jnp.sum(conv(h, ws[1], (1, 1), "VALID", dimension_numbers=_DN[2]) ** 2)

    def step(ws, _):
      return jax.tree.map(lambda a, b: a - 1e-3 * b, ws, jax.grad(loss)(ws)), None

    return jax.jit(lambda ws: lax.scan(step, ws, None, length=2)[0])

  def labels(conv):
    text = make(conv).lower((w, w2)).compile().as_text()
    return {part.split(",")[0] for part in text.split("dim_labels=")[1:]}

  assert labels(lax.conv_general_dilated) - {"b01f_01io->b01f"}, (
      "lax's gradients are expected to be non-canonical here; if this fails "
      "XLA changed and conv_op may no longer be needed")
  assert labels(conv_op.conv_general_dilated) == {"b01f_01io->b01f"}


def test_other_convolutions_fall_back_to_lax():
  x, w, _ = _inputs((9, 9), (3, 3), c_in=4, c_out=6)
  for kwargs in (dict(feature_group_count=2), dict(rhs_dilation=(2, 2)),
                 dict(lhs_dilation=(2, 1))):
    w_ = w[:, :, :2] if "feature_group_count" in kwargs else w
    pad = ((1, 1), (1, 1))
    ref = lax.conv_general_dilated(x, w_, (1, 1), pad,
                                   dimension_numbers=_DN[2], **kwargs)
    got = conv_op.conv_general_dilated(x, w_, (1, 1), pad,
                                       dimension_numbers=_DN[2], **kwargs)
    np.testing.assert_array_equal(got, ref)
  x_nchw = jnp.moveaxis(x, -1, 1)
  ref = lax.conv_general_dilated(x_nchw, w, (2, 2), "SAME",
                                 dimension_numbers=("NCHW", "HWIO", "NCHW"))
  got = conv_op.conv_general_dilated(x_nchw, w, (2, 2), "SAME",
                                     dimension_numbers=("NCHW", "HWIO", "NCHW"))
  np.testing.assert_array_equal(got, ref)


def test_conv_module_matches_nnx_conv():
  x, _, _ = _inputs((8, 8), (3, 3))
  ours = conv_op.Conv(3, 5, (3, 3), strides=2, rngs=nnx.Rngs(0))
  ref = nnx.Conv(3, 5, (3, 3), strides=2, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(ours.kernel[...], ref.kernel[...])
  np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
  grads = [jax.grad(lambda m: jnp.sum(m(x) ** 2))(m) for m in (ours, ref)]
  np.testing.assert_allclose(grads[0].kernel[...], grads[1].kernel[...],
                             rtol=1e-4, atol=1e-4)
