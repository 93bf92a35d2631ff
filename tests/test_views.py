"""Tests for mi_jax.views: halves, crops, Lab split, noise, registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mi_jax import views


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


def test_top_bottom_flat_are_first_and_last_392_pixels():
  pixels_Bx28x28x1 = _images((5, 28, 28, 1))
  top, bottom = jax.jit(views.top_bottom_halves_flat)(pixels_Bx28x28x1)
  flat_Bx784 = np.asarray(pixels_Bx28x28x1).reshape(5, 784)
  assert top.shape == bottom.shape == (5, 392)
  np.testing.assert_array_equal(top, flat_Bx784[:, :392])
  np.testing.assert_array_equal(bottom, flat_Bx784[:, 392:])


def test_top_bottom_halves_shapes_and_content():
  pixels = _images((2, 28, 28, 1))
  top, bottom = views.top_bottom_halves(pixels)
  assert top.shape == bottom.shape == (2, 14, 28, 1)
  np.testing.assert_array_equal(jnp.concatenate([top, bottom], 1), pixels)


def test_left_right_halves():
  pixels = _images((2, 6, 8, 3))
  left, right = jax.jit(views.left_right_halves)(pixels)
  assert left.shape == right.shape == (2, 6, 4, 3)
  np.testing.assert_array_equal(left, np.asarray(pixels)[:, :, :4])
  np.testing.assert_array_equal(right, np.asarray(pixels)[:, :, 4:])
  l_flat, r_flat = views.left_right_halves_flat(pixels)
  assert l_flat.shape == r_flat.shape == (2, 72)


def test_wrong_rank_and_odd_sizes_raise():
  with pytest.raises(ValueError, match="rank 4"):
    views.top_bottom_halves(jnp.zeros((4, 784)))
  with pytest.raises(ValueError, match="even height"):
    views.top_bottom_halves(jnp.zeros((1, 7, 8, 1)))
  with pytest.raises(ValueError, match="even width"):
    views.left_right_halves(jnp.zeros((1, 8, 7, 1)))
  with pytest.raises(ValueError, match="fit"):
    views.random_crops(jnp.zeros((1, 8, 8, 1)), jax.random.key(0), 9)
  with pytest.raises(ValueError, match="3 channels"):
    views.rgb_to_lab(jnp.zeros((1, 4, 4, 1)))
  with pytest.raises(ValueError, match="split"):
    views.channel_split(jnp.zeros((1, 4, 4, 3)), split=3)


def test_random_crops_are_subimages_and_independent():
  pixels = _images((16, 10, 12, 2))
  c1, c2 = jax.jit(views.random_patches, static_argnums=2)(
      pixels, jax.random.key(1), 4)
  assert c1.shape == c2.shape == (16, 4, 4, 2)
  images = np.asarray(pixels)
  for crops in (np.asarray(c1), np.asarray(c2)):
    for b in range(16):
      found = any(
          np.array_equal(images[b, i:i + 4, j:j + 4], crops[b])
          for i in range(7) for j in range(9))
      assert found
  assert not np.array_equal(c1, c2)
  # Offsets differ across images of the batch.
  rect = views.random_crops(pixels, jax.random.key(2), (3, 5))
  assert rect.shape == (16, 3, 5, 2)


def test_grid_patches_match_slices():
  pixels = _images((2, 12, 10, 1))
  patches = jax.jit(views.grid_patches, static_argnums=(1, 2))(pixels, 4, 3)
  assert patches.shape == (2, 3, 3, 4, 4, 1)
  images = np.asarray(pixels)
  for i in range(3):
    for j in range(3):
      np.testing.assert_array_equal(
          patches[:, i, j], images[:, 3 * i:3 * i + 4, 3 * j:3 * j + 4])
  assert views.grid_patches(_images((1, 64, 64, 3)), 16, 8).shape == (
      1, 7, 7, 16, 16, 3)


def _lab_reference(rgb):
  """NumPy reference of sRGB -> CIE Lab (D65)."""
  rgb = rgb.astype(np.float64)
  lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
  m = np.array([[0.412453, 0.357580, 0.180423],
                [0.212671, 0.715160, 0.072169],
                [0.019334, 0.119193, 0.950227]])
  xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
  d = 6 / 29
  f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
  return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                   200 * (f[..., 1] - f[..., 2])], -1)


def test_rgb_to_lab_matches_numpy_reference_and_known_values():
  pixels = _images((3, 5, 5, 3))
  pixels = pixels.at[0, 0, 0].set(0.0).at[0, 0, 1].set(0.01)
  lab = jax.jit(views.rgb_to_lab)(pixels)
  np.testing.assert_allclose(lab, _lab_reference(np.asarray(pixels)),
                             atol=2e-3)
  known = jnp.asarray([[[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
  np.testing.assert_allclose(
      views.rgb_to_lab(known)[0, 0],
      [[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [0.0, 0.0, 0.0]], atol=0.05)


def test_lab_split_and_channel_split():
  pixels = _images((2, 4, 4, 3))
  l, ab = views.lab_split(pixels)
  assert l.shape == (2, 4, 4, 1) and ab.shape == (2, 4, 4, 2)
  ref = _lab_reference(np.asarray(pixels))
  np.testing.assert_allclose(l[..., 0], ref[..., 0] / 100, atol=1e-4)
  np.testing.assert_allclose(ab, ref[..., 1:] / 128, atol=1e-4)
  r, gb = views.channel_split(pixels)
  np.testing.assert_array_equal(r, pixels[..., :1])
  np.testing.assert_array_equal(gb, pixels[..., 1:])


def test_add_noise_std_and_independence():
  view = jnp.zeros((4000, 8))
  k1, k2 = jax.random.split(jax.random.key(0))
  n1, n2 = views.add_noise(view, k1, 0.05), views.add_noise(view, k2, 0.05)
  assert abs(float(jnp.std(n1)) - 0.05) < 2e-3
  assert abs(float(jnp.corrcoef(n1.ravel(), n2.ravel())[0, 1])) < 0.02


def test_make_views_registry():
  pixels = _images((4, 28, 28, 1))
  key = jax.random.key(0)
  v1, v2 = jax.jit(views.make_views("top_bottom", flatten=True))(pixels, key)
  np.testing.assert_array_equal(v1, np.asarray(pixels).reshape(4, -1)[:, :392])
  shapes = lambda fn, x: [v.shape for v in jax.eval_shape(fn, x, key)]
  assert shapes(views.make_views("left_right"), pixels) == [
      (4, 28, 14, 1)] * 2
  assert shapes(views.make_views("crops", size=20), pixels) == [
      (4, 20, 20, 1)] * 2
  assert shapes(views.make_views("lab"), _images((2, 8, 8, 3))) == [
      (2, 8, 8, 1), (2, 8, 8, 2)]
  assert shapes(views.make_views("channels", split=2),
                _images((2, 8, 8, 3))) == [(2, 8, 8, 2), (2, 8, 8, 1)]
  v1, v2 = jax.jit(views.make_views("top_bottom", noise_std=0.05,
                                    flatten=True))(pixels, key)
  noise1 = v1 - np.asarray(pixels).reshape(4, -1)[:, :392]
  noise2 = v2 - np.asarray(pixels).reshape(4, -1)[:, 392:]
  assert 0.03 < float(jnp.std(noise1)) < 0.07
  assert not np.allclose(noise1, noise2)
  with pytest.raises(ValueError, match="known"):
    views.make_views("nope")
  with pytest.raises(ValueError, match="size"):
    views.make_views("crops")


def test_make_views_vmaps_over_seed_keys():
  pixels = _images((4, 8, 8, 1))
  fn = views.make_views("crops", size=5, noise_std=0.1)
  keys = jax.random.split(jax.random.key(0), 3)

  @jax.jit
  def run(pixels, keys):
    vmapped = jax.vmap(fn, in_axes=(None, 0))(pixels, keys)
    return vmapped, [fn(pixels, keys[s]) for s in range(3)]

  (v1_S, v2_S), singles = run(pixels, keys)
  assert v1_S.shape == v2_S.shape == (3, 4, 5, 5, 1)
  for s, (v1, v2) in enumerate(singles):
    np.testing.assert_allclose(v1_S[s], v1, atol=1e-6)
    np.testing.assert_allclose(v2_S[s], v2, atol=1e-6)
  assert not np.allclose(v1_S[0], v1_S[1])
