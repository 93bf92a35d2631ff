"""Deep InfoMax (DIM): global, local and prior-matching objectives.

Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler, Bengio,
"Learning deep representations by mutual information estimation and
maximization", ICLR 2019 (arXiv:1808.06670).

An encoder maps an image X to a local feature map C(X) (M = h*w locations) and
a global code Y = E(X). The loss (minimised) is

  - alpha * I(C(X); Y)                      global term, DIM(G)
  - beta  * mean_m I(C_m(X); Y)             local term, DIM(L)
  - gamma * D_hat(V || U_P)                 prior matching, a min-max

where each I is a bound from `mi_jax.bounds` ("jsd", "infonce", "dv") on a
score matrix with positives marked by a mask:

- local: an encode-and-dot critic,
  scores_BMxB[(b, m), j] = l(C_m(x_b)) . g(y_j), with l and g the reference
  code's embedding (`MIEmbedding`: 1x1 convs with BN, a noisy-identity
  shortcut and a final LayerNorm) on the map and on Y; row (b, m) is
  positive at column b. JSD and
  DV pool all positives and all negatives, so they read the matrix either
  way. InfoNCE has a direction
  (`local_contrast`): "locations" (the paper's eq. 5 and its code) contrasts
  each positive against the other images' locations under the same Y, i.e.
  the bound on the transposed matrix, candidates {(b, m)} + {(j, m'), j != b},
  at most log(1 + (B - 1) M); "codes" contrasts C_m(x_b) against the other
  images' codes y_j, candidates B, at most log B, and equals the mean over
  locations m of InfoNCE on the [B, B] matrix of location m.
- global: the map, convolved down and flattened, is concatenated with Y into
  an MLP discriminator (a `mi_jax.critics.ConcatMLP`): scores_BxB, positives on
  the diagonal.
- prior: D_hat = E_v~U[0,1]^d [log D(v)] + E_x [log(1 - D(sigmoid(Y)))]. The
  discriminator D maximises D_hat minus a gradient penalty; the encoder
  minimises -E log D(sigmoid(Y)) (non-saturating, the default, as the
  reference code) or D_hat itself (minimax, the paper's eq. 7: sigmoid(Y)
  enters D through `grad_reverse`, an identity whose backward pass negates
  the gradient). All in one gradient step of one loss; see `dim_loss`.
"""

import functools
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mi_jax.encoders import conv_op

_ESTIMATOR_ALIASES = {"nce": "infonce", "infonce": "infonce", "jsd": "jsd",
                      "dv": "dv"}


def resolve_estimator(estimator: Union[str, Callable]) -> Callable:
  """Maps "jsd" | "infonce" (alias "nce") | "dv" to its `mi_jax.bounds` fn."""
  if callable(estimator):
    return estimator
  from mi_jax import bounds as bounds_lib  # pylint: disable=g-import-not-at-top
  name = _ESTIMATOR_ALIASES.get(estimator.lower(), estimator.lower())
  return bounds_lib.get(name)


@jax.custom_vjp
def grad_reverse(x: jax.Array) -> jax.Array:
  """Gradient reversal: forward y = x, backward dL/dx = -dL/dy.

  Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
  ICML 2015. Turns one minimised loss into a min-max between the modules
  before and after it.
  """
  return x


def _grad_reverse_fwd(x):
  return x, None


def _grad_reverse_bwd(_, g):
  return (jax.tree.map(jnp.negative, g),)


grad_reverse.defvjp(_grad_reverse_fwd, _grad_reverse_bwd)


def local_positive_mask(batch: int, locations: int) -> jax.Array:
  """mask_BMxB[(b, m), j] = (b == j): row b * M + m is positive at column b."""
  row_image_BM = jnp.arange(batch * locations) // locations
  return row_image_BM[:, None] == jnp.arange(batch)[None, :]


def local_scores(l_BxMxE: jax.Array, g_BxE: jax.Array):
  """Encode-and-dot scores of every (image, location) against every code.

    scores_BMxB[b * M + m, j] = <l_BxMxE[b, m], g_BxE[j]>

  Returns:
    (scores_BMxB, mask_BMxB) with the positives of `local_positive_mask`.
  """
  b, m, e = l_BxMxE.shape
  scores_BMxB = l_BxMxE.reshape(b * m, e) @ g_BxE.T
  return scores_BMxB, local_positive_mask(b, m)


def _noisy_identity(key, shape, dtype=jnp.float32):
  """Kernel [in, out] ~ U(-0.01, 0.01) with ones on the diagonal (in <= out).

  The reference's initialisation of the linear shortcut (rdevon/DIM,
  `MI1x1ConvNet`, "a sort of noisy copy"): the shortcut starts as the
  identity on the first `in` output units.
  """
  kernel = jax.random.uniform(key, shape, dtype, -0.01, 0.01)
  n = min(shape)
  return kernel.at[jnp.arange(n), jnp.arange(n)].set(1.0)


class MIEmbedding(nnx.Module):
  """The reference DIM critic's embedding (rdevon/DIM `MI1x1ConvNet`).

    h(x) = LayerNorm( W2 relu(BN(W1 x)) + b2  +  S x )   on the last axis

  A 1x1 convolution on a map [B, h, w, C] is a linear layer on its last
  axis, so the same module embeds the local map (BN statistics over B, h, w)
  and the code Y (a 1x1 map; BN statistics over B). W1 has no bias (BN
  follows); the shortcut S has no bias and starts as a noisy identity
  (`_noisy_identity`) when `units >= in_dim`, else Flax's default. The final
  LayerNorm (learned gain 1, bias 0 at init) gives every embedding norm
  sqrt(units) at init whatever the input's scale, so the dot-product scores
  stay bounded by `units` and do not grow with ||Y||.
  """

  def __init__(self, in_dim: int, units: int, *, hidden_dim: Optional[int] = None,
               bn_momentum: float = 0.9, rngs: nnx.Rngs):
    hidden_dim = hidden_dim or units
    self.hidden = nnx.Linear(in_dim, hidden_dim, use_bias=False, rngs=rngs)
    self.bn = nnx.BatchNorm(hidden_dim, momentum=bn_momentum, rngs=rngs)
    self.out = nnx.Linear(hidden_dim, units, rngs=rngs)
    shortcut_init = (_noisy_identity if units >= in_dim
                     else nnx.initializers.lecun_normal())
    self.shortcut = nnx.Linear(in_dim, units, use_bias=False,
                               kernel_init=shortcut_init, rngs=rngs)
    self.norm = nnx.LayerNorm(units, rngs=rngs)

  def __call__(self, x_NxC: jax.Array) -> jax.Array:
    h_NxU = self.out(jax.nn.relu(self.bn(self.hidden(x_NxC))))
    return self.norm(h_NxU + self.shortcut(x_NxC))


class LocalCritic(nnx.Module):
  """DIM's local critic as the reference code builds it (rdevon/DIM `LocalDIM`).

    l(C) = MIEmbedding(C)   per location (1x1 convs on the map)
    g(Y) = MIEmbedding(Y)   (Y as a 1x1 map)
    score((b, m), j) = score_scale * l(C(x_b))_m . g(y_j)

  Both embeddings end in a LayerNorm, so scores do not grow with ||Y|| (see
  `MIEmbedding`). `score_scale` is 1 in the reference.
  """

  def __init__(self, local_channels: int, code_dim: int, *,
               embed_dim: int = 2048, hidden_dim: Optional[int] = None,
               score_scale: float = 1.0, rngs: nnx.Rngs):
    self.score_scale = score_scale
    self.local_net = MIEmbedding(local_channels, embed_dim,
                                 hidden_dim=hidden_dim, rngs=rngs)
    self.global_net = MIEmbedding(code_dim, embed_dim, hidden_dim=hidden_dim,
                                  rngs=rngs)

  def embed_local(self, local_BxHxWxC: jax.Array) -> jax.Array:
    """l(C): [B, h, w, C] -> l_BxMxE with M = h * w (row-major locations)."""
    l_BxHxWxE = self.local_net(local_BxHxWxC)
    b, h, w, e = l_BxHxWxE.shape
    return l_BxHxWxE.reshape(b, h * w, e)

  def embed_global(self, y_BxD: jax.Array) -> jax.Array:
    """g(Y): [B, D] -> g_BxE."""
    return self.global_net(y_BxD)

  def __call__(self, local_BxHxWxC: jax.Array, y_BxD: jax.Array):
    """Returns (scores_BMxB, mask_BMxB), see `local_scores`."""
    scores_BMxB, mask_BMxB = local_scores(self.embed_local(local_BxHxWxC),
                                          self.embed_global(y_BxD))
    return self.score_scale * scores_BMxB, mask_BMxB


class PlainLocalCritic(LocalCritic):
  """Our former local critic, kept as an ablation (no BN, no LayerNorm).

    l(C) = conv1x1(relu(conv1x1(C))) + conv1x1_skip(C)     per location
    g(Y) = linear(relu(linear(Y))) + linear_skip(Y)
    score((b, m), j) = score_scale * l(C(x_b))_m . g(y_j)

  Its scores grow linearly with ||Y|| (the skip is linear), which the local
  term rewards; `MIEmbedding`'s LayerNorm removes that.
  """

  def __init__(self, local_channels: int, code_dim: int, *,
               embed_dim: int = 2048, hidden_dim: Optional[int] = None,
               score_scale: float = 1.0, rngs: nnx.Rngs):  # pylint: disable=super-init-not-called
    hidden_dim = hidden_dim or embed_dim
    self.score_scale = score_scale
    conv = functools.partial(conv_op.Conv, kernel_size=(1, 1), rngs=rngs)
    self.l_hidden = conv(local_channels, hidden_dim)
    self.l_out = conv(hidden_dim, embed_dim)
    self.l_skip = conv(local_channels, embed_dim)
    self.g_hidden = nnx.Linear(code_dim, hidden_dim, rngs=rngs)
    self.g_out = nnx.Linear(hidden_dim, embed_dim, rngs=rngs)
    self.g_skip = nnx.Linear(code_dim, embed_dim, rngs=rngs)

  def embed_local(self, local_BxHxWxC: jax.Array) -> jax.Array:
    l_BxHxWxE = (self.l_out(jax.nn.relu(self.l_hidden(local_BxHxWxC)))
                 + self.l_skip(local_BxHxWxC))
    b, h, w, e = l_BxHxWxE.shape
    return l_BxHxWxE.reshape(b, h * w, e)

  def embed_global(self, y_BxD: jax.Array) -> jax.Array:
    return self.g_out(jax.nn.relu(self.g_hidden(y_BxD))) + self.g_skip(y_BxD)


LOCAL_CRITICS = {"reference": LocalCritic, "plain": PlainLocalCritic}


class GlobalCritic(nnx.Module):
  """DIM(G) discriminator: T(C, Y) = MLP([flatten(convs(C)), Y]) for all pairs.

  The map is convolved down (3x3 convs, 64 then 32 channels, VALID padding
  when the map is at least 5x5) and flattened; the concat MLP over every
  (map_i, Y_j) pair is `mi_jax.critics.ConcatMLP`, giving scores_BxB.
  """

  def __init__(self, local_shape: tuple[int, int, int], code_dim: int, *,
               conv_channels: tuple[int, ...] = (64, 32),
               hidden_dims: tuple[int, ...] = (512, 512), rngs: nnx.Rngs):
    from mi_jax import critics  # pylint: disable=g-import-not-at-top
    h, w, c = local_shape
    padding = "VALID" if min(h, w) >= 2 * len(conv_channels) + 1 else "SAME"
    convs = []
    for c_out in conv_channels:
      convs.append(conv_op.Conv(c, c_out, (3, 3), padding=padding, rngs=rngs))
      if padding == "VALID":
        h, w = h - 2, w - 2
      c = c_out
    self.convs = nnx.List(convs)
    self.pair_mlp = critics.make("concat", h * w * c, code_dim,
                                 hidden=tuple(hidden_dims), rngs=rngs)

  def __call__(self, local_BxHxWxC: jax.Array, y_BxD: jax.Array) -> jax.Array:
    h_BxHxWxC = local_BxHxWxC
    for i, conv in enumerate(self.convs):
      h_BxHxWxC = conv(h_BxHxWxC)
      if i < len(self.convs) - 1:
        h_BxHxWxC = jax.nn.relu(h_BxHxWxC)
    flat_BxK = h_BxHxWxC.reshape(h_BxHxWxC.shape[0], -1)
    return self.pair_mlp(flat_BxK, y_BxD)


class PriorDiscriminator(nnx.Module):
  """D(v) = sigmoid(MLP(v)), MLP d -> 1000 -> 200 -> 1.

  Default sizes as we read the paper's appendix (not re-checked here).
  """

  def __init__(self, code_dim: int, *,
               hidden_dims: tuple[int, ...] = (1000, 200), rngs: nnx.Rngs):
    dims = (code_dim, *hidden_dims, 1)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, v_BxD: jax.Array) -> jax.Array:
    """Logits of D, shape [B]."""
    h = v_BxD
    for layer in self.layers[:-1]:
      h = jax.nn.relu(layer(h))
    return self.layers[-1](h)[:, 0]


def prior_objective(d_prior_B: jax.Array, d_code_B: jax.Array) -> jax.Array:
  """The discriminator's objective of the prior term (paper, eq. 7).

    D_hat = E_v~V [log D(v)] + E_x [log(1 - D(code(x)))]
          = -mean softplus(-d(v)) - mean softplus(d(code)),   D = sigmoid(d)

  V is the prior, code = sigmoid(Y); `d_prior_B`, `d_code_B` are the logits
  d(v), d(code). The discriminator maximises D_hat; the encoder minimises it.
  D_hat <= 0, and equals -2 log 2 when D = 1/2 everywhere.
  """
  d_prior_B = d_prior_B.astype(jnp.float32)
  d_code_B = d_code_B.astype(jnp.float32)
  return (-jnp.mean(jax.nn.softplus(-d_prior_B))
          - jnp.mean(jax.nn.softplus(d_code_B)))


def gradient_penalty(disc: Callable, v_BxD: jax.Array) -> jax.Array:
  """Mescheder et al.'s gradient penalty as DIM's reference code applies it.

    GP(v) = mean_b || d/dv_b  d(v_b) ||^2

  where d is the discriminator's logit (rdevon/DIM
  `contrastive_gradient_penalty`: the gradient of sum_b d(v_b) with respect
  to the batch, squared and summed per sample, averaged over the batch).
  The reference penalises both the prior and the code batch,
  0.5 * (GP(prior) + GP(stop_gradient(code))) (Mescheder, Geiger & Nowozin,
  "Which training methods for GANs do actually converge?", ICML 2018).
  `v_BxD` is treated as a constant input; the result is differentiable with
  respect to the discriminator's weights.
  """
  v_BxD = jax.lax.stop_gradient(v_BxD.astype(jnp.float32))
  grad_BxD = jax.grad(lambda v: jnp.sum(disc(v)))(v_BxD)
  return jnp.mean(jnp.sum(jnp.square(grad_BxD), axis=-1))


def occlude(images_BxHxWxC: jax.Array, key: jax.Array, size: int) -> jax.Array:
  """Zeroes one random `size` x `size` block per image (DIM's occlusion).

  Block corners are uniform over the positions where the block fits.
  """
  b, h, w, _ = images_BxHxWxC.shape
  if not 0 < size <= min(h, w):
    raise ValueError(f"occlusion size must be in [1, {min(h, w)}], got {size}")
  key_top, key_left = jax.random.split(key)
  top_B = jax.random.randint(key_top, (b,), 0, h - size + 1)
  left_B = jax.random.randint(key_left, (b,), 0, w - size + 1)
  rows_BxH = jnp.arange(h)[None, :] - top_B[:, None]
  cols_BxW = jnp.arange(w)[None, :] - left_B[:, None]
  inside_BxHxW = (((rows_BxH >= 0) & (rows_BxH < size))[:, :, None]
                  & ((cols_BxW >= 0) & (cols_BxW < size))[:, None, :])
  return jnp.where(inside_BxHxW[..., None], 0.0, images_BxHxWxC)


def code_statistics(y_BxD: jax.Array) -> dict:
  """`y_norm` = mean_b ||y_b||_2 and `code_saturated` = the fraction of
  sigmoid(y) entries outside [0.01, 0.99] (|y| > log 99)."""
  y_BxD = y_BxD.astype(jnp.float32)
  return {"y_norm": jnp.mean(jnp.linalg.norm(y_BxD, axis=-1)),
          "code_saturated": jnp.mean(jnp.abs(y_BxD) > jnp.log(99.0))}


class DIMModel(nnx.Module):
  """Every trainable piece of DIM: encoder, local / global critics, prior D.

  `encoder(x) -> (local_map, fc, y)` (e.g. `mi_jax.encoders.dim_conv`). A
  critic or discriminator that is None is skipped by the loss (its weight must
  then be 0).
  """

  def __init__(self, encoder: nnx.Module, *,
               local_critic: Optional[LocalCritic] = None,
               global_critic: Optional[GlobalCritic] = None,
               prior_disc: Optional[PriorDiscriminator] = None):
    self.encoder = encoder
    self.local_critic = local_critic
    self.global_critic = global_critic
    self.prior_disc = prior_disc


def make_dim_model(encoder: nnx.Module, *, rngs: nnx.Rngs,
                   local_shape: tuple[int, int, int],
                   alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.1,
                   local_embed_dim: int = 2048,
                   local_hidden_dim: Optional[int] = None,
                   local_score_scale: float = 1.0,
                   local_critic: str = "reference",
                   global_conv_channels: tuple[int, ...] = (64, 32),
                   global_hidden_dims: tuple[int, ...] = (512, 512),
                   prior_hidden_dims: tuple[int, ...] = (1000, 200),
                   ) -> DIMModel:
  """Builds a `DIMModel` with only the parts whose weight is non-zero.

  Args:
    encoder: module with `encoder(x) -> (local_map, fc, y)` and `code_dim`.
    local_shape: (h, w, C) of the encoder's local map.
    alpha, beta, gamma: weights of the global, local and prior terms.
    local_critic: "reference" (`LocalCritic`, BN + noisy-identity shortcut +
      LayerNorm, as rdevon/DIM) or "plain" (`PlainLocalCritic`, ablation).
  """
  if local_critic not in LOCAL_CRITICS:
    raise ValueError(f"local_critic must be one of {sorted(LOCAL_CRITICS)}, "
                     f"got {local_critic!r}")
  code_dim = encoder.code_dim
  local = (LOCAL_CRITICS[local_critic](
      local_shape[-1], code_dim, embed_dim=local_embed_dim,
      hidden_dim=local_hidden_dim, score_scale=local_score_scale, rngs=rngs)
           if beta else None)
  glob = (GlobalCritic(tuple(local_shape), code_dim,
                       conv_channels=tuple(global_conv_channels),
                       hidden_dims=tuple(global_hidden_dims), rngs=rngs)
          if alpha else None)
  prior = (PriorDiscriminator(code_dim, hidden_dims=tuple(prior_hidden_dims),
                              rngs=rngs)
           if gamma else None)
  return DIMModel(encoder, local_critic=local, global_critic=glob,
                  prior_disc=prior)


def augment(images_BxHxWxC: jax.Array, key: jax.Array, *,
            crop_size: Optional[int] = None, flip: bool = False) -> jax.Array:
  """Random `crop_size` crops and horizontal flips (paper's STL-10 setup)."""
  key_crop, key_flip = jax.random.split(key)
  if crop_size is not None and crop_size < images_BxHxWxC.shape[1]:
    from mi_jax import views  # pylint: disable=g-import-not-at-top
    images_BxHxWxC = views.random_crops(images_BxHxWxC, key_crop, crop_size)
  if flip:
    flip_B = jax.random.bernoulli(key_flip, 0.5, (images_BxHxWxC.shape[0],))
    images_BxHxWxC = jnp.where(flip_B[:, None, None, None],
                               images_BxHxWxC[:, :, ::-1], images_BxHxWxC)
  return images_BxHxWxC


def center_crop(images_BxHxWxC: jax.Array, crop_size: Optional[int]):
  """Central `crop_size` crop (evaluation counterpart of `augment`)."""
  if crop_size is None or crop_size >= images_BxHxWxC.shape[1]:
    return images_BxHxWxC
  top = (images_BxHxWxC.shape[1] - crop_size) // 2
  left = (images_BxHxWxC.shape[2] - crop_size) // 2
  return images_BxHxWxC[:, top:top + crop_size, left:left + crop_size]


# The encoder's side of the prior term: "non_saturating" (the reference's
# default), "minimax" (the paper's eq. 7) or "none" (not the paper's: D is
# trained exactly as with the others but the encoder gets no gradient from it,
# the gamma = 0 control for the co-trained discriminator's accuracy).
PRIOR_ENCODER_LOSSES = ("non_saturating", "minimax", "none")


def _prior_term(disc, y_BxD, key, *, encoder_loss, gp_weight):
  """(loss, metrics) of the prior term for weight 1; see `dim_loss`."""
  code_BxD = jax.nn.sigmoid(y_BxD.astype(jnp.float32))
  prior_BxD = jax.random.uniform(key, code_BxD.shape, jnp.float32)
  d_prior_B = disc(prior_BxD)
  if encoder_loss == "minimax":
    d_code_B = disc(grad_reverse(code_BxD))
    d_hat = prior_objective(d_prior_B, d_code_B)
    loss = -d_hat
  elif encoder_loss == "non_saturating":
    d_code_B = disc(jax.lax.stop_gradient(code_BxD))
    d_hat = prior_objective(d_prior_B, d_code_B)
    graphdef, disc_state = nnx.split(disc)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(disc_state))
    enc_term = jnp.mean(jax.nn.softplus(-frozen(code_BxD)))  # -E log D
    loss = enc_term - d_hat
  elif encoder_loss == "none":  # D trained as a monitor; the encoder ignores it
    d_code_B = disc(jax.lax.stop_gradient(code_BxD))
    d_hat = prior_objective(d_prior_B, d_code_B)
    loss = -d_hat
  else:
    raise ValueError(f"prior_encoder_loss must be one of {PRIOR_ENCODER_LOSSES}"
                     f", got {encoder_loss!r}")
  metrics = {"prior_d": d_hat,
             "prior_acc": 0.5 * (jnp.mean(d_prior_B > 0)
                                 + jnp.mean(d_code_B < 0))}
  if gp_weight:
    gp = 0.5 * (gradient_penalty(disc, prior_BxD)
                + gradient_penalty(disc, code_BxD))
    loss += gp_weight * gp
    metrics["prior_gp"] = gp
  return loss, metrics


def dim_loss(model: DIMModel, batch: dict, key: jax.Array, *,
             estimator: Union[str, Callable] = "jsd",
             alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.1,
             crop_size: Optional[int] = None, flip: bool = False,
             prior_encoder_loss: str = "non_saturating",
             prior_gp: float = 1.0, occlusion: int = 0,
             local_contrast: str = "locations", block_size: int = 0):
  """DIM loss: -(alpha I_G + beta I_L) + gamma * prior loss.

    I_G = bound(T_G(C(x_i), y_j))              scores_BxB, diagonal positives
    I_L = bound(l(C_m(x_b)) . g(y_j))          scores_BMxB, row (b, m) -> col b
    D_hat = E_U[0,1]^d log D(v) + E_x log(1 - D(sigmoid(y)))

  Prior term (weight gamma on all of it; under Adam the scale of D's loss
  does not change D's updates, so this matches the reference, which does not
  scale D's loss):
  - D maximises D_hat - prior_gp * 0.5 (GP(prior) + GP(code))
    (`gradient_penalty`, on every sample of both batches, as rdevon/DIM);
  - the encoder, with `prior_encoder_loss="non_saturating"` (the reference's
    `generator_loss(..., 'non-saturating')`, the default), minimises
    -E_x log D(sigmoid(y)) with D's weights frozen in that term (Goodfellow
    et al. 2014: same fixed point, no vanishing gradient while D wins);
    with "minimax" (the paper's eq. 7) it minimises D_hat: sigmoid(y) enters
    D through `grad_reverse`, so one descent step is ascent for D's weights
    and descent for the encoder's.
    With "none" (an option beyond the paper) D is trained the same way and
    the encoder gets no gradient from the prior term: a discriminator that
    watches an encoder trained without the prior.
  `occlusion` > 0: Y is computed from the images with one random
  occlusion x occlusion block zeroed (`occlude`), the local map from the full
  images (the paper's occlusion for DIM(L)); one more encoder pass.
  `local_contrast`: "locations" (paper) or "codes", see the module docstring.
  `block_size` > 0 (InfoNCE over codes only): the local term by the
  memory-linear `mi_jax.bounds.blocked.infonce` on the critic's embeddings
  (rows (b, m), `rows_per_positive` M), never forming scores_BMxB; on a mesh
  each device reduces its own rows against all the global batch's codes.
  Same value and gradients as the dense term.

  Returns:
    (loss, metrics) with metrics `mi_local`, `mi_global`, `prior_d` (D_hat),
    `prior_acc` (D's accuracy on prior vs code samples), `prior_gp`, and
    `y_norm`, `code_saturated` (`code_statistics`), in nats where MI.
  """
  bound_fn = resolve_estimator(estimator)
  key_aug, key_prior, key_occ = jax.random.split(key, 3)
  images = augment(batch["image"], key_aug, crop_size=crop_size, flip=flip)
  local_BxHxWxC, _, y_BxD = model.encoder(images)
  if occlusion:
    y_BxD = model.encoder(occlude(images, key_occ, occlusion))[2]
  loss = jnp.zeros((), jnp.float32)
  metrics = code_statistics(y_BxD)
  if beta and block_size:
    from mi_jax.bounds import blocked  # pylint: disable=g-import-not-at-top
    critic = model.local_critic
    l_BxMxE = critic.embed_local(local_BxHxWxC)
    b, m, e = l_BxMxE.shape
    mi_local = blocked.infonce(
        critic.score_scale * l_BxMxE.reshape(b * m, e),
        critic.embed_global(y_BxD), block_size=int(block_size),
        rows_per_positive=m)
    loss -= beta * mi_local
    metrics["mi_local"] = mi_local
  elif beta:
    scores_BMxB, mask_BMxB = model.local_critic(local_BxHxWxC, y_BxD)
    if local_contrast == "locations":
      scores, mask = scores_BMxB.T, mask_BMxB.T  # rows: codes y_b
    elif local_contrast == "codes":
      scores, mask = scores_BMxB, mask_BMxB      # rows: locations (b, m)
    else:
      raise ValueError("local_contrast must be 'locations' or 'codes', got "
                       f"{local_contrast!r}")
    mi_local = jnp.asarray(bound_fn(scores, mask=mask), jnp.float32)
    loss -= beta * mi_local
    metrics["mi_local"] = mi_local
  if alpha:
    scores_BxB = model.global_critic(local_BxHxWxC, y_BxD)
    mi_global = jnp.asarray(bound_fn(scores_BxB), jnp.float32)
    loss -= alpha * mi_global
    metrics["mi_global"] = mi_global
  if gamma:
    prior_loss, prior_metrics = _prior_term(
        model.prior_disc, y_BxD, key_prior, encoder_loss=prior_encoder_loss,
        gp_weight=prior_gp)
    loss += gamma * prior_loss
    metrics.update(prior_metrics)
  return loss, metrics


def make_dim_loss(*, estimator: Union[str, Callable] = "jsd",
                  alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.1,
                  crop_size: Optional[int] = None, flip: bool = False,
                  prior_encoder_loss: str = "non_saturating",
                  prior_gp: float = 1.0, occlusion: int = 0,
                  local_contrast: str = "locations", block_size: int = 0):
  """Returns `loss_fn(model, batch, key)`: `dim_loss` with its options bound.

  A string estimator is resolved here, so a wrong name fails early.
  """
  if block_size:
    from mi_jax.bounds import blocked  # pylint: disable=g-import-not-at-top
    blocked.resolve(estimator, block_size)  # Checks the name and size.
    if estimator != "infonce" or local_contrast != "codes":
      raise ValueError(
          "DIM's block_size needs estimator='infonce' with "
          f"local_contrast='codes', got {estimator!r} / {local_contrast!r}; "
          "set dim.block_size=0 for the dense bound.")
  if prior_encoder_loss not in PRIOR_ENCODER_LOSSES:
    raise ValueError(f"prior_encoder_loss must be one of {PRIOR_ENCODER_LOSSES}"
                     f", got {prior_encoder_loss!r}")
  return functools.partial(
      dim_loss, estimator=resolve_estimator(estimator), alpha=alpha,
      beta=beta, gamma=gamma, crop_size=crop_size, flip=flip,
      prior_encoder_loss=prior_encoder_loss, prior_gp=prior_gp,
      occlusion=occlusion, local_contrast=local_contrast,
      block_size=int(block_size or 0))


# --------------------------------------------------------------------------
# Plug-in glue: `build(config, *, seed) -> Method` for `config.method = "dim"`
# (experiments/configs/dim_*.py). Options under `config.dim`, critic sizes
# under `config.critic`.


def build_model(config, in_channels: int, *, seed: int) -> DIMModel:
  """The `DIMModel` of a DIM config: encoder + the critics whose weights are non-zero."""
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import config_kwargs  # pylint: disable=g-import-not-at-top
  rngs = nnx.Rngs(seed)
  enc_kwargs = config_kwargs(config.encoder.get("kwargs"))
  enc_kwargs.setdefault("in_channels", in_channels)
  encoder = encoders.make(config.encoder.name, rngs=rngs, **enc_kwargs)
  size = config.dim.get("crop_size") or enc_kwargs.get("image_size", 32)
  local_shape = nnx.eval_shape(
      lambda m, x: m.encode(x)["local"], encoder,
      jax.ShapeDtypeStruct((1, size, size, enc_kwargs["in_channels"]),
                           jnp.float32)).shape[1:]
  d, cr = config.dim, config.critic
  return make_dim_model(
      encoder, rngs=rngs, local_shape=tuple(local_shape),
      alpha=d.alpha, beta=d.beta, gamma=d.gamma,
      local_embed_dim=cr.local_embed_dim,
      local_hidden_dim=cr.get("local_hidden_dim"),
      local_score_scale=cr.get("local_score_scale", 1.0),
      local_critic=cr.get("local_critic", "reference"),
      global_conv_channels=tuple(cr.global_conv_channels),
      global_hidden_dims=tuple(cr.global_hidden_dims),
      prior_hidden_dims=tuple(cr.prior_hidden_dims))


def _format_results(results: dict, config) -> str:
  """Held-out bound, then one row per probe and feature set: learned vs random-init."""
  lines = [
      f"held-out {config.dim.estimator} bound (test split, batch "
      f"{config.batch_size}): {results.get('eval/bound', float('nan')):.3f} nats",
      f"linear probe, learned features : {100 * results['probe/linear_acc']:.1f}%",
      f"linear probe, raw view pixels  : {100 * results['probe/pixel_linear_acc']:.1f}%",
      f"{config.probe.get('knn_k', 5)}-NN, learned features        : "
      f"{100 * results['probe/knn_acc']:.1f}%",
      "probe   features  learned  random-init"]
  for key in results:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "probe" or parts[1].startswith(
        ("random_", "pixel_")):
      continue
    rnd = results.get(f"probe/random_{parts[1]}/{parts[2]}")
    rnd_s = f"{100 * rnd:5.1f}%" if rnd is not None else "    -"
    lines.append(f"{parts[1][:-4]:7s} {parts[2]:9s} {100 * results[key]:5.1f}%   "
                 f"{rnd_s}")
  for name in ("conv", "fc", "y"):  # DIM's reference MLP probe (config.mlp_ref)
    key = f"mlp_ref/mlp_acc/{name}"
    if key in results:
      rnd = results.get(f"mlp_ref/random_mlp_acc/{name}")
      rnd_s = f"{100 * rnd:5.1f}%" if rnd is not None else "    -"
      lines.append(f"mlp_ref {name:9s} {100 * results[key]:5.1f}%   {rnd_s}")
  suite = [k.split("/")[1] for k in results
           if k.startswith("suite/") and not k.startswith("suite/random_")]
  for name in suite:  # I(X; Y), NDM, prior statistics (config.suite)
    rnd = results.get(f"suite/random_{name}")
    rnd_s = f"{rnd:8.4f}" if rnd is not None else "       -"
    lines.append(f"suite   {name:17s} {results['suite/' + name]:8.4f}  {rnd_s}")
  return "\n".join(lines)


def build(config, *, seed: int):
  """Deep InfoMax (Hjelm et al. 2019) as a `Method`.

  `config.dim`: `estimator` (jsd / infonce / dv), weights `alpha` (global),
  `beta` (local), `gamma` (prior), `prior_encoder_loss` ("non_saturating",
  default, or "minimax"), `prior_gp` (discriminator gradient penalty, 1.0),
  `occlusion` (block side, 0 = off), `local_contrast`, `crop_size` (random
  crops in training, centre crops for the probes), `flip`; `config.critic`
  holds the critic / discriminator sizes and `local_critic` ("reference" or
  "plain"). Features: the encoder's `conv`, `fc` and `y` (Y is the primary
  one); raw baseline: the (centre-cropped) image pixels. Optional
  evaluations: with a `config.mlp_ref` node, DIM's reference MLP probe
  (`mlp_ref/mlp_acc/{conv,fc,y}`); with a `config.suite` node, I(X; Y), NDM
  and the prior statistics (`suite/...`), see `mi_jax.evaluation.dim_suite`.
  """
  from mi_jax.objectives import _images  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import Evaluation, Method  # pylint: disable=g-import-not-at-top
  d = config.get("dim")
  if not hasattr(d, "estimator"):
    raise ValueError("DIM's options live under config.dim (estimator, alpha, "
                     "beta, gamma, ...), see experiments/configs/dim_mnist5k.py")
  crop = d.get("crop_size")
  train_data, probe_train, probe_test = _images.image_splits(config)
  in_channels = int(probe_train["image"].shape[-1])

  def init_model(seed):
    # Built under jit: one compiled initialiser instead of one per eager op.
    return nnx.jit(lambda: build_model(config, in_channels, seed=seed))()

  loss_fn = make_dim_loss(
      estimator=d.estimator, alpha=d.alpha, beta=d.beta, gamma=d.gamma,
      crop_size=crop, flip=d.get("flip", False),
      prior_encoder_loss=d.get("prior_encoder_loss", "non_saturating"),
      prior_gp=d.get("prior_gp", 1.0), occlusion=d.get("occlusion", 0),
      local_contrast=d.get("local_contrast", "locations"),
      block_size=d.get("block_size", 0) or 0)

  def features(model, images):
    feats = model.encoder.encode(center_crop(images, crop))
    return {k: feats[k].reshape(images.shape[0], -1) for k in ("conv", "fc", "y")}

  def pixels(images):
    return center_crop(images, crop)

  def input_and_code(model, images):  # the suite's [X | Y] rows
    x = center_crop(images, crop)
    return jnp.concatenate([x.reshape(x.shape[0], -1),
                            model.encoder.encode(x)["y"]], axis=-1)

  labelled = dict(
      inputs={"train": probe_train["image"], "test": probe_test["image"]},
      labels={"train": np.asarray(probe_train["label"]),
              "test": np.asarray(probe_test["label"])})
  evaluations = [_images.probe_evaluation(
      features, probe_train, probe_test, raw_features=pixels,
      raw_name="pixel", primary="y")]
  if "mlp_ref" in config:  # DIM's reference MLP probe on conv / fc / y
    evaluations.append(Evaluation(
        **labelled, features=features, protocol="reference_mlp",
        name="mlp_ref", primary="y"))
  if "suite" in config:  # I(X; Y), NDM, prior statistics on the test split
    evaluations.append(Evaluation(
        inputs={"test": probe_test["image"]},
        labels={"test": np.asarray(probe_test["label"])},
        features=input_and_code, protocol="dim_suite", name="suite",
        options={"code_dim": int(config.encoder.kwargs.code_dim)}))

  return Method(
      model=init_model(seed), loss_fn=loss_fn, train_data=train_data,
      heldout_batches=_images.split_batches(probe_test, config.batch_size),
      evaluations=evaluations,
      bound_key="mi_local" if d.beta else "mi_global",
      title=(f"{config.dataset}: DIM {d.estimator} alpha={d.alpha} "
             f"beta={d.beta} gamma={d.gamma}, {config.encoder.name}"),
      format_results=_format_results, init_model=init_model)
