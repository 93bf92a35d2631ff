"""Contrastive Predictive Coding on image patch grids and on speech.

An encoder maps each patch (image) or 10 ms frame (speech) to z; an
autoregressive context network maps z to c with c_{i} depending on z_{<= i}
only (rows of the patch grid, or time); one linear head W_k per offset
k = 1..K predicts z k rows (steps) ahead:

  pred_k(b, i, j) = W_k c(b, i, j),    s_k[(b, i, j), (b', i', j')] =
                                         pred_k(b, i, j) . z(b', i', j')

for every row i < H - k and every patch (b', i', j') of every image (or frame
of every recording) in the global batch. The positive of row (b, i, j) is
(b, i + k, j); every other column is a negative, so the negatives are the other
patches of the same image and all patches of the other images. The loss is
InfoNCE with that positive mask (`mi_jax.bounds.infonce`), averaged over k:

  loss = -(1/K) sum_k I_NCE(s_k, mask_k)

and the per-offset log loss (cross-entropy of the positive, = log #columns -
I_NCE) and top-1 accuracy are reported as metrics.

van den Oord, Li, Vinyals, "Representation Learning with Contrastive
Predictive Coding", 2018; Hénaff et al., "Data-Efficient Image Recognition
with Contrastive Predictive Coding", ICML 2020.

The batch axis is the leading axis of every array here, so under
`mi_jax.training.sharding.shard_train_step` the columns span the global batch
(XLA gathers z from every device); the objective holds no device code.
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mi_jax import audio, bounds, views


def offset_mask(b: int, h: int, w: int, k: int) -> jax.Array:
  """Positive mask of offset k on a `[b, h, w]` grid: `[b*(h-k)*w, b*h*w]` bool.

  Row r = (n*(h-k) + i)*w + j is the prediction from cell (n, i, j); column
  c = (n'*h + i')*w + j' is cell (n', i', j'); mask[r, c] iff n' = n,
  i' = i + k and j' = j. Built from iotas (no Python loop over cells).
  """
  if not 0 < k < h:
    raise ValueError(f"offset k={k} must be in [1, {h - 1}] for grid height "
                     f"{h}.")
  n_R = jnp.arange(b)[:, None, None]
  i_R = jnp.arange(h - k)[None, :, None]
  j_R = jnp.arange(w)[None, None, :]
  target_R = ((n_R * h + i_R + k) * w + j_R).reshape(-1)
  return target_R[:, None] == jnp.arange(b * h * w)[None, :]


def offset_scores(pred_BxHxWxD: jax.Array, z_BxHxWxD: jax.Array,
                  k: int) -> jax.Array:
  """Scores of offset k: rows = predictions from rows i < H - k, columns = all z.

  Returns:
    scores_RxN, R = B*(H-k)*W, N = B*H*W, in the layout of `offset_mask`.
  """
  b, h, w, d = z_BxHxWxD.shape
  pred_RxD = pred_BxHxWxD[:, :h - k].reshape(-1, d)
  z_NxD = z_BxHxWxD.reshape(-1, d)
  return jnp.einsum("rd,nd->rn", pred_RxD, z_NxD,
                    preferred_element_type=jnp.float32)


def cpc_terms(z_BxHxWxD: jax.Array, c_BxHxWxC: jax.Array,
              heads_KxCxD: jax.Array):
  """Per-offset InfoNCE, log loss and accuracy on a grid (speech: W = 1).

  Returns:
    (infonce_K, logloss_K, acc_K), float32 [K] each; offset k is entry k-1.
  """
  b, h, w, _ = z_BxHxWxD.shape
  infonce, logloss, acc = [], [], []
  for k in range(1, heads_KxCxD.shape[0] + 1):
    pred = jnp.einsum("bhwc,cd->bhwd", c_BxHxWxC, heads_KxCxD[k - 1])
    scores_RxN = offset_scores(pred, z_BxHxWxD, k)
    mask_RxN = offset_mask(b, h, w, k)
    value = bounds.infonce(scores_RxN, mask_RxN)
    infonce.append(value)
    logloss.append(math.log(scores_RxN.shape[1]) - value)
    target_R = jnp.argmax(mask_RxN, axis=1)
    acc.append(jnp.mean(jnp.argmax(scores_RxN, axis=1) == target_R))
  return (jnp.stack(infonce), jnp.stack(logloss),
          jnp.stack(acc).astype(jnp.float32))


class CPCModel(nnx.Module):
  """Encoder + autoregressive context + one linear head per offset.

  `kind="image"`: inputs `[B, H, W, C]` are cut into a grid of overlapping
  `patch_size` patches at `patch_stride` (`mi_jax.views.grid_patches`), each
  encoded to z (`encoder(patches_PxSxSxC) -> z_PxD`); the grid is
  `[B, Nh, Nw, D]`. `kind="audio"`: inputs `[B, L]` are encoded by a
  frame-rate encoder (`encoder(wave_BxL) -> z_BxTxD`), a grid `[B, T, 1, D]`.
  `context(z grid) -> c grid` must be causal along axis 1.

  Args:
    encoder, context: NNX modules with int `out_dim`.
    num_offsets: K (predictions 1..K rows / steps ahead).
  """

  def __init__(self, encoder: nnx.Module, context: nnx.Module, *,
               num_offsets: int, kind: str = "image", patch_size: int = 8,
               patch_stride: int = 4, rngs: nnx.Rngs):
    if kind not in ("image", "audio"):
      raise ValueError(f"CPCModel kind must be 'image' or 'audio', got "
                       f"{kind!r}.")
    if num_offsets < 1:
      raise ValueError(f"num_offsets must be >= 1, got {num_offsets}.")
    self.encoder = encoder
    self.context = context
    self.kind = kind
    self.patch_size = patch_size
    self.patch_stride = patch_stride
    init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1,
                                         batch_axis=(0,))
    self.heads = nnx.Param(init(rngs.params(), (
        num_offsets, context.out_dim, encoder.out_dim)))

  def grid(self, x: jax.Array) -> jax.Array:
    """The z grid `[B, H, W, D]` of a batch of images or waveforms."""
    if self.kind == "audio":
      z_BxTxD = self.encoder(x)
      return z_BxTxD[:, :, None, :]
    patches = views.grid_patches(x, self.patch_size, self.patch_stride)
    b, nh, nw = patches.shape[:3]
    z_PxD = self.encoder(patches.reshape(b * nh * nw, *patches.shape[3:]))
    return z_PxD.reshape(b, nh, nw, -1)

  def __call__(self, x: jax.Array):
    """Returns `(z_BxHxWxD, c_BxHxWxC)`."""
    z = self.grid(x)
    if self.kind == "audio":
      return z, self.context(z[:, :, 0])[:, :, None]
    return z, self.context(z)

  def features(self, x: jax.Array, length_B=None) -> dict:
    """Pooled features for probes: mean of c and of z over the grid.

    For audio, `length_B` (valid samples per row) restricts the mean to the
    frames that start inside the recording.
    """
    z, c = self(x)
    if length_B is None:
      w_BxHxWx1 = jnp.ones(z.shape[:3] + (1,), jnp.float32)
    else:
      step = self.encoder.downsampling
      w_BxH = jnp.arange(z.shape[1])[None] * step < jnp.maximum(
          length_B[:, None], 1)
      w_BxHxWx1 = w_BxH[:, :, None, None].astype(jnp.float32)
    n_Bx1 = jnp.sum(w_BxHxWx1, axis=(1, 2))

    def pool(t):
      return jnp.sum(t * w_BxHxWx1, axis=(1, 2)) / n_Bx1

    return {"context": pool(c), "z": pool(z)}


def image_input(batch: dict, key: jax.Array) -> jax.Array:
  """The model input of an image batch: `batch["image"]`."""
  del key
  return batch["image"]


def audio_crop_input(crop: int) -> Callable:
  """`fn(batch, key)`: one random `crop`-sample window of each recording."""
  def fn(batch, key):
    return audio.random_crops_1d(batch["audio"], batch["length"], key, crop)
  return fn


def cpc_loss(model: CPCModel, batch: dict, key: jax.Array, *,
             input_fn: Callable = image_input):
  """CPC loss `-(1/K) sum_k I_NCE(s_k, mask_k)` (module docstring).

  Returns:
    (loss, metrics) with `mi` (mean I_NCE over offsets, nats) and per offset
    `infonce/k{k}`, `logloss/k{k}`, `acc/k{k}`.
  """
  z, c = model(input_fn(batch, key))
  infonce_K, logloss_K, acc_K = cpc_terms(z, c, model.heads[...])
  mi = jnp.mean(infonce_K)
  metrics = {"mi": mi, "acc": jnp.mean(acc_K)}
  for k in range(infonce_K.shape[0]):
    metrics[f"infonce/k{k + 1}"] = infonce_K[k]
    metrics[f"logloss/k{k + 1}"] = logloss_K[k]
    metrics[f"acc/k{k + 1}"] = acc_K[k]
  return -mi, metrics


def make_cpc_loss(*, input_fn: Callable = image_input):
  """`loss_fn(model, batch, key)`: `cpc_loss` with its input function bound."""
  return functools.partial(cpc_loss, input_fn=input_fn)


# --------------------------------------------------------------------------
# Plug-in for the training engine: `build(config, *, seed) -> Method`.


def make_model(config, *, seed: int) -> CPCModel:
  """The `CPCModel` of a config (`config.cpc`: encoder, context, offsets, patches)."""
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import config_kwargs  # pylint: disable=g-import-not-at-top
  c = config.cpc
  rngs = nnx.Rngs(seed)
  kind = "audio" if config.dataset == "fsdd" else "image"
  enc_kwargs = config_kwargs(c.encoder.get("kwargs"))
  if kind == "image":
    enc_kwargs.setdefault("in_channels", int(c.get("in_channels", 1)))
  encoder = encoders.make(c.encoder.name, rngs=rngs, **enc_kwargs)
  context = encoders.make(c.context.name, in_dim=encoder.out_dim, rngs=rngs,
                          **config_kwargs(c.context.get("kwargs")))
  return CPCModel(encoder, context, num_offsets=int(c.num_offsets), kind=kind,
                  patch_size=int(c.get("patch_size", 8)),
                  patch_stride=int(c.get("patch_stride", 4)), rngs=rngs)


def _format_offsets(results: dict) -> str:
  accs = sorted((int(k.rsplit("k", 1)[1]), v) for k, v in results.items()
                if k.startswith("eval/acc/k"))
  if not accs:
    return ""
  return "held-out CPC accuracy per offset k: " + ", ".join(
      f"k={k}: {100 * v:.1f}%" for k, v in accs)


def build(config, *, seed: int):
  """CPC as an engine method: images (`config.dataset` a TFDS name) or FSDD speech.

  Config: `dataset` ("mnist", "mnist5k", ... or "fsdd"), `cpc.encoder`
  (`name`, `kwargs`; per patch for images, frame-rate for speech),
  `cpc.context` (`name`, `kwargs`: "row_causal_context" or "gru_context"),
  `cpc.num_offsets` K, `cpc.patch_size` / `cpc.patch_stride` (images),
  `cpc.crop` (speech: training window in samples). Evaluations: images, the
  linear probe of the label on pooled context features beside raw pixels;
  speech, the speaker and digit probes beside pooled log-mel features
  (`mi_jax.objectives._audio`). Pooled z (encoder output) is probed too, as
  the feature set `z`.
  """
  from mi_jax.objectives import _audio, _images  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import Method  # pylint: disable=g-import-not-at-top

  def init_model(seed):
    return make_model(config, seed=seed)

  c = config.cpc
  title = (f"CPC {config.dataset}: {c.encoder.name} + {c.context.name}, "
           f"K={c.num_offsets}")
  if config.dataset == "fsdd":
    train, test = _audio.fsdd_splits(config)
    loss_fn = make_cpc_loss(input_fn=audio_crop_input(int(c.crop)))
    evaluations = _audio.fsdd_evaluations(
        lambda model, x: model.features(x["audio"], x["length"]), train,
        test, primary="context")

    def format_results(results, config):
      del config
      return "\n".join([_audio.format_fsdd_results(results),
                        _format_offsets(results)])

    return Method(
        model=init_model(seed), loss_fn=loss_fn, train_data=train,
        heldout_batches=_images.split_batches(
            _audio.heldout_subset(test, config), config.batch_size),
        evaluations=evaluations, bound_key="mi", title=title,
        format_results=format_results, init_model=init_model)

  train_data, probe_train, probe_test = _images.image_splits(config)

  def format_results(results, config):
    del config
    return "\n".join([
        "linear probe (digit), pooled context: "
        f"{100 * results.get('probe/linear_acc', float('nan')):.1f}%   raw "
        f"pixels {100 * results.get('probe/pixel_linear_acc', float('nan')):.1f}"
        f"%   random encoder "
        f"{100 * results.get('probe/random_linear_acc', float('nan')):.1f}%",
        _format_offsets(results)])

  return Method(
      model=init_model(seed), loss_fn=make_cpc_loss(), train_data=train_data,
      heldout_batches=_images.split_batches(
          _audio.heldout_subset(probe_test, config), config.batch_size),
      evaluations=[_images.probe_evaluation(
          lambda model, x: model.features(x), probe_train, probe_test,
          raw_features=lambda x: x.reshape(x.shape[0], -1),
          raw_name="pixel", primary="context")],
      bound_key="mi", title=title, format_results=format_results,
      init_model=init_model)
