"""View makers: pure functions `images (+ key) -> (view1, view2)`.

Images are batch-first `pixels_BxHxWxC`, float32 in [0, 1]. Every function is
jit-safe (shapes depend only on input shapes and static arguments) and checks
ranks and sizes eagerly with a clear `ValueError`.

- Halves, Tschannen et al. 2020 (MNIST: view 1 = top half = first 392 of the
  784 row-major pixels, view 2 = bottom half = last 392); quadrants (4 views).
- Random crops / patches (two independent crops per image); a CPC-style
  grid of overlapping patches.
- Colour split: L vs ab as in CMC (Tian, Krishnan, Isola 2019), or a plain
  channel split.
- `add_noise`: additive Gaussian noise per view, independent keys.
- `make_views(name, **kwargs) -> fn(images, key) -> (view1, view2)`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

ViewFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _check_images(pixels_BxHxWxC: jax.Array, where: str) -> None:
  if pixels_BxHxWxC.ndim != 4:
    raise ValueError(
        f"{where} expects images of rank 4 [B, H, W, C], got shape "
        f"{tuple(pixels_BxHxWxC.shape)}.")


def _flatten(x_Bx: jax.Array) -> jax.Array:
  return x_Bx.reshape(x_Bx.shape[0], -1)


def top_bottom_halves(pixels_BxHxWxC: jax.Array):
  """Splits images into top and bottom halves: rows [0, H/2) and [H/2, H).

  Tschannen et al., "On Mutual Information Maximization for Representation
  Learning", ICLR 2020: the two MNIST views are the top and bottom halves.

  Returns:
    (top_BxH2xWxC, bottom_BxH2xWxC).
  Raises:
    ValueError: for a rank other than 4 or an odd height.
  """
  _check_images(pixels_BxHxWxC, "top_bottom_halves")
  h = pixels_BxHxWxC.shape[1]
  if h % 2:
    raise ValueError(f"top_bottom_halves needs an even height, got H={h}.")
  return pixels_BxHxWxC[:, :h // 2], pixels_BxHxWxC[:, h // 2:]


def top_bottom_halves_flat(pixels_BxHxWxC: jax.Array):
  """Top and bottom halves, each flattened row-major to `[B, H/2 * W * C]`.

  For MNIST [B, 28, 28, 1] these are exactly the first 392 and the last 392
  pixels of the flattened 784 (the paper's public code slices the flat image).
  """
  top, bottom = top_bottom_halves(pixels_BxHxWxC)
  return _flatten(top), _flatten(bottom)


def left_right_halves(pixels_BxHxWxC: jax.Array):
  """Splits images into left and right halves: columns [0, W/2) and [W/2, W).

  Returns:
    (left_BxHxW2xC, right_BxHxW2xC).
  Raises:
    ValueError: for a rank other than 4 or an odd width.
  """
  _check_images(pixels_BxHxWxC, "left_right_halves")
  w = pixels_BxHxWxC.shape[2]
  if w % 2:
    raise ValueError(f"left_right_halves needs an even width, got W={w}.")
  return pixels_BxHxWxC[:, :, :w // 2], pixels_BxHxWxC[:, :, w // 2:]


def left_right_halves_flat(pixels_BxHxWxC: jax.Array):
  """Left and right halves, each flattened row-major to `[B, H * W/2 * C]`."""
  left, right = left_right_halves(pixels_BxHxWxC)
  return _flatten(left), _flatten(right)


def quadrants(pixels_BxHxWxC: jax.Array):
  """Splits images into four quadrants: top-left, top-right, bottom-left, bottom-right.

  The four-view MNIST setting of CMC-style experiments (Tian, Krishnan,
  Isola, "Contrastive Multiview Coding", 2019, use any number of views).

  Returns:
    (tl, tr, bl, br), each `[B, H/2, W/2, C]`.
  Raises:
    ValueError: for a rank other than 4 or an odd height or width.
  """
  top, bottom = top_bottom_halves(pixels_BxHxWxC)
  return left_right_halves(top) + left_right_halves(bottom)


def _crop_size(size, h: int, w: int) -> tuple[int, int]:
  ch, cw = (size, size) if isinstance(size, int) else tuple(size)
  if not (0 < ch <= h and 0 < cw <= w):
    raise ValueError(
        f"Crop size {(ch, cw)} must be positive and fit in images of size "
        f"{(h, w)}.")
  return ch, cw


def random_crops(pixels_BxHxWxC: jax.Array, key: jax.Array, size):
  """One uniformly placed crop of `size` (int or (h, w)) per image.

  Offsets are drawn independently per image: top ~ U{0..H-h}, left ~ U{0..W-w}.

  Returns:
    crops_BxhxwxC.
  """
  _check_images(pixels_BxHxWxC, "random_crops")
  b, h, w, c = pixels_BxHxWxC.shape
  ch, cw = _crop_size(size, h, w)
  key_top, key_left = jax.random.split(key)
  top_B = jax.random.randint(key_top, (b,), 0, h - ch + 1)
  left_B = jax.random.randint(key_left, (b,), 0, w - cw + 1)

  def crop(image_HxWxC, top, left):
    return jax.lax.dynamic_slice(image_HxWxC, (top, left, 0), (ch, cw, c))

  return jax.vmap(crop)(pixels_BxHxWxC, top_B, left_B)


def random_patches(pixels_BxHxWxC: jax.Array, key: jax.Array, size):
  """Two independent random crops of `size` per image (two views of one image).

  Returns:
    (crops1_BxhxwxC, crops2_BxhxwxC).
  """
  key1, key2 = jax.random.split(key)
  return (random_crops(pixels_BxHxWxC, key1, size),
          random_crops(pixels_BxHxWxC, key2, size))


def grid_patches(pixels_BxHxWxC: jax.Array, size: int, stride: int):
  """Overlapping square patches on a regular grid, CPC style.

  van den Oord, Li, Vinyals, "Representation Learning with Contrastive
  Predictive Coding", 2018: a 64x64 image becomes a 7x7 grid of 16x16
  patches with stride 8. Patch (i, j) covers rows [i*stride, i*stride+size)
  and columns [j*stride, j*stride+size).

  Returns:
    patches_BxNhxNwxSxSxC with Nh = (H - size) // stride + 1 (same for Nw).
  """
  _check_images(pixels_BxHxWxC, "grid_patches")
  _, h, w, _ = pixels_BxHxWxC.shape
  _crop_size(size, h, w)
  if stride <= 0:
    raise ValueError(f"grid_patches needs a positive stride, got {stride}.")
  offsets_S = jnp.arange(size)
  rows = jnp.arange((h - size) // stride + 1)[:, None] * stride + offsets_S
  cols = jnp.arange((w - size) // stride + 1)[:, None] * stride + offsets_S
  # [B, Nh, S, W, C] -> [B, Nh, S, Nw, S, C] -> [B, Nh, Nw, S, S, C]
  by_rows = pixels_BxHxWxC[:, rows]
  patches = by_rows[:, :, :, cols]
  return jnp.transpose(patches, (0, 1, 3, 2, 4, 5))


# sRGB (D65) -> CIE XYZ, as in IEC 61966-2-1 / scikit-image.
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
               (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def rgb_to_lab(pixels_BxHxWxC: jax.Array) -> jax.Array:
  """Converts sRGB in [0, 1] to CIE L*a*b* (D65 white), the standard formula.

    linear = c / 12.92                      if c <= 0.04045
           = ((c + 0.055) / 1.055) ** 2.4   otherwise
    [X, Y, Z] = M_sRGB->XYZ linear / white_D65
    f(t) = t ** (1/3) if t > (6/29)^3 else t / (3 (6/29)^2) + 4/29
    L = 116 f(Y) - 16,  a = 500 (f(X) - f(Y)),  b = 200 (f(Y) - f(Z))

  L is in [0, 100]; a, b roughly in [-128, 127]. Computed in float32.
  """
  _check_images(pixels_BxHxWxC, "rgb_to_lab")
  if pixels_BxHxWxC.shape[-1] != 3:
    raise ValueError(
        "rgb_to_lab needs 3 channels, got shape "
        f"{tuple(pixels_BxHxWxC.shape)}.")
  rgb = jnp.clip(pixels_BxHxWxC.astype(jnp.float32), 0.0, 1.0)
  linear = jnp.where(rgb <= 0.04045, rgb / 12.92,
                     ((rgb + 0.055) / 1.055) ** 2.4)
  m_3x3 = jnp.asarray(_RGB_TO_XYZ, jnp.float32)
  xyz = jnp.einsum("bhwc,kc->bhwk", linear, m_3x3)
  xyz = xyz / jnp.asarray(_WHITE_D65, jnp.float32)
  eps = (6.0 / 29.0) ** 3
  f = jnp.where(xyz > eps, jnp.cbrt(jnp.maximum(xyz, eps)),
                xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
  fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
  return jnp.stack(
      [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_split(pixels_BxHxWxC: jax.Array, normalize: bool = True):
  """CMC's colour views: luminance L vs chrominance ab of the L*a*b* image.

  Tian, Krishnan, Isola, "Contrastive Multiview Coding", 2019. With
  `normalize`, L is divided by 100 (to [0, 1]) and ab by 128 (to about
  [-1, 1]).

  Returns:
    (l_BxHxWx1, ab_BxHxWx2).
  """
  lab = rgb_to_lab(pixels_BxHxWxC)
  l_BxHxWx1, ab_BxHxWx2 = lab[..., :1], lab[..., 1:]
  if normalize:
    l_BxHxWx1, ab_BxHxWx2 = l_BxHxWx1 / 100.0, ab_BxHxWx2 / 128.0
  return l_BxHxWx1, ab_BxHxWx2


def channel_split(pixels_BxHxWxC: jax.Array, split: int = 1):
  """Plain channel split: channels [0, split) vs [split, C).

  Raises:
    ValueError: unless 0 < split < C.
  """
  _check_images(pixels_BxHxWxC, "channel_split")
  c = pixels_BxHxWxC.shape[-1]
  if not 0 < split < c:
    raise ValueError(f"channel_split needs 0 < split < C={c}, got {split}.")
  return pixels_BxHxWxC[..., :split], pixels_BxHxWxC[..., split:]


def add_noise(view: jax.Array, key: jax.Array, std: float) -> jax.Array:
  """Returns `view + std * N(0, 1)`; use a distinct key for each view.

  Tschannen et al. 2020 add N(0, 0.05^2) noise to the inputs (§3.1c and the
  raw-pixel baseline).
  """
  noise = jax.random.normal(key, view.shape, jnp.float32)
  return (view.astype(jnp.float32) + std * noise).astype(view.dtype)


def _deterministic(split_fn) -> ViewFn:
  def fn(pixels_BxHxWxC, key):
    del key
    return split_fn(pixels_BxHxWxC)
  return fn


def make_views(name: str, *, flatten: bool = False, noise_std: float = 0.0,
               **kwargs) -> ViewFn:
  """Returns `fn(images, key) -> (view1, view2)` for a named view maker.

  Names: "top_bottom", "left_right" (halves), "crops" (two random crops;
  needs `size`), "lab" (L vs ab; optional `normalize`), "channels" (plain
  split; optional `split`). With `flatten`, each view is flattened to
  `[B, -1]`. With `noise_std > 0`, independent N(0, noise_std^2) noise is
  added to each view (keys split from `key`).

  Raises:
    ValueError: for an unknown name; the message lists known names.
  """
  makers = {
      "top_bottom": lambda: _deterministic(top_bottom_halves),
      "left_right": lambda: _deterministic(left_right_halves),
      "crops": lambda: (lambda x, k: random_patches(x, k, **kwargs)),
      "lab": lambda: _deterministic(lambda x: lab_split(x, **kwargs)),
      "channels": lambda: _deterministic(lambda x: channel_split(x, **kwargs)),
  }
  if name not in makers:
    raise ValueError(f"Unknown view maker {name!r}; known: {sorted(makers)}")
  if name in ("top_bottom", "left_right") and kwargs:
    raise ValueError(f"View maker {name!r} takes no options, got {kwargs}.")
  if name == "crops" and "size" not in kwargs:
    raise ValueError("View maker 'crops' needs size=<int or (h, w)>.")
  base = makers[name]()

  def fn(pixels_BxHxWxC: jax.Array, key: jax.Array):
    key_views, key_noise1, key_noise2 = jax.random.split(key, 3)
    view1, view2 = base(pixels_BxHxWxC, key_views)
    if flatten:
      view1, view2 = _flatten(view1), _flatten(view2)
    if noise_std > 0:
      view1 = add_noise(view1, key_noise1, noise_std)
      view2 = add_noise(view2, key_noise2, noise_std)
    return view1, view2

  return fn


NAMES = ("top_bottom", "left_right", "crops", "lab", "channels")
