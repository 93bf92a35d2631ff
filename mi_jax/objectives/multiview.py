"""The multiview objective of Tschannen et al. 2020: maximise a bound on I(g1(x1); g2(x2)).

Two views `(x1, x2) = views(images, key)` of each image are encoded by `g1`,
`g2` (separate or one shared encoder), a critic scores every pair,
`scores_BxB[i, j] = critic(g1(x1_i), g2(x2_j))`, and a bound from
`mi_jax.bounds` turns the scores into an MI estimate (positives on the
diagonal). The loss is `-bound` (or `|bound - target|` in target mode, §3.3).

Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information
Maximization for Representation Learning", ICLR 2020.
"""

import functools
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
from flax import nnx

ViewsFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


class MultiviewModel(nnx.Module):
  """Two encoders and a critic: `model(x1, x2) -> scores_BxB`.

  Args:
    g1: encoder of the first view.
    g2: encoder of the second view; None shares `g1` (one set of weights).
    critic: `critic(z1_BxD, z2_BxD') -> scores_BxB`.
    flatten: reshape each view to `[B, -1]` before encoding (for MLPs on
      image halves, as in §3.2 of the paper).
  """

  def __init__(self, g1: nnx.Module, g2: Optional[nnx.Module],
               critic: nnx.Module, *, flatten: bool = False):
    self.g1 = g1
    self.g2 = g1 if g2 is None else g2
    self.critic = critic
    self.flatten = flatten

  def _prep(self, x):
    return x.reshape(x.shape[0], -1) if self.flatten else x

  def encode1(self, x1):
    """First-view representation `g1(x1)`."""
    return self.g1(self._prep(x1))

  def encode2(self, x2):
    """Second-view representation `g2(x2)`."""
    return self.g2(self._prep(x2))

  def __call__(self, x1, x2):
    return self.critic(self.encode1(x1), self.encode2(x2))


def _resolve_bound(bound: Union[str, Callable]) -> Callable:
  if isinstance(bound, str):
    from mi_jax import bounds as bounds_lib  # pylint: disable=g-import-not-at-top
    return bounds_lib.get(bound)
  return bound


def multiview_loss(
    model: MultiviewModel,
    batch: dict,
    key: jax.Array,
    *,
    views: ViewsFn,
    bound: Union[str, Callable],
    bound_kwargs: Optional[dict] = None,
    noise_std: float = 0.0,
    target: Optional[float] = None,
    block_size: Optional[int] = None,
):
  """Multiview loss: `-I_bound(g1(v1); g2(v2))`, or `|I_bound - target|`.

  `(v1, v2) = views(batch["image"], key_views)`; if `noise_std > 0` each view
  gets independent `N(0, noise_std^2)` noise; `scores = critic(g1(v1),
  g2(v2))`; `mi = bound(scores, **bound_kwargs)` (float32, nats).

  Args:
    model: a `MultiviewModel` (or any module with `model(x1, x2) -> scores`).
    batch: dict with at least `"image"` `[B, ...]`.
    key: PRNG key for the views and the noise.
    views: `views(images, key) -> (v1, v2)`, e.g. `mi_jax.views.make_views(...)`.
    bound: a bound name for `mi_jax.bounds.get` or a fn `fn(scores, **kw)`.
    bound_kwargs: extra keyword arguments for the bound.
    noise_std: std of the additive Gaussian noise on each view.
    target: if set, the loss is `|mi - target|` (Tschannen et al. §3.3, which
      trains to a fixed MI value instead of maximising it).
    block_size: if set, the memory-linear path: `bound` is a
      `mi_jax.bounds.blocked` function (as `make_multiview_loss` resolves
      it), called on the critic's factors `(ua, ub) =
      critic.factors(g1(v1), g2(v2))` with this many rows per block; on a
      mesh its rows are split over the devices with negatives from the
      whole global batch. Same value and gradients as the dense path.

  Returns:
    `(loss, {"mi": mi})`.
  """
  bound_fn = bound if block_size else _resolve_bound(bound)
  key_views, key_n1, key_n2 = jax.random.split(key, 3)
  v1, v2 = views(batch["image"], key_views)
  if noise_std > 0:
    v1 = v1 + noise_std * jax.random.normal(key_n1, v1.shape, v1.dtype)
    v2 = v2 + noise_std * jax.random.normal(key_n2, v2.shape, v2.dtype)
  if block_size:
    ua_BxK, ub_BxK = model.critic.factors(model.encode1(v1), model.encode2(v2))
    mi = bound_fn(ua_BxK, ub_BxK, block_size=int(block_size),
                  **(bound_kwargs or {}))
  else:
    mi = bound_fn(model(v1, v2), **(bound_kwargs or {}))
  mi = jnp.asarray(mi, jnp.float32)
  loss = -mi if target is None else jnp.abs(mi - target)
  return loss, {"mi": mi}


def make_multiview_loss(
    *,
    views: ViewsFn,
    bound: Union[str, Callable],
    bound_kwargs: Optional[dict] = None,
    noise_std: float = 0.0,
    target: Optional[float] = None,
    block_size: Optional[int] = None,
):
  """Returns `loss_fn(model, batch, key)`: `multiview_loss` with options bound.

  A string `bound` is resolved once here, so a wrong name fails early. With
  `block_size` (> 0) the bound must be a name in `mi_jax.bounds.blocked.NAMES`
  (infonce, dv, nwj) and the critic factorisable (see `multiview_loss`).
  """
  if block_size:
    from mi_jax.bounds import blocked  # pylint: disable=g-import-not-at-top
    bound_fn = blocked.resolve(bound, block_size)
  else:
    bound_fn = _resolve_bound(bound)
  return functools.partial(
      multiview_loss, views=views, bound=bound_fn, bound_kwargs=bound_kwargs,
      noise_std=noise_std, target=target, block_size=block_size or None)


# --------------------------------------------------------------------------
# Plug-in glue: `build(config, *, seed) -> Method` for `config.method =
# "multiview"` (experiments/configs/multiview_mnist.py).


def _make_encoder(name: str, kwargs: dict, view_BxHxWxC, rngs: nnx.Rngs):
  """`encoders.make(name, ...)`, filling input sizes the config leaves out.

  From the view's shape: `in_dim` / `dim` (flattened size, MLP-like encoders)
  and `in_channels` (last axis, conv encoders), when the encoder takes them.
  """
  import inspect  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  kwargs = dict(kwargs)
  cls = getattr(encoders, "_REGISTRY", {}).get(name)
  if cls is not None:
    params = inspect.signature(cls.__init__).parameters
    sizes = {"in_dim": int(np.prod(view_BxHxWxC.shape[1:])),
             "dim": int(np.prod(view_BxHxWxC.shape[1:])),
             "in_channels": int(view_BxHxWxC.shape[-1])}
    for arg, size in sizes.items():
      if arg in params and arg not in kwargs:
        kwargs[arg] = size
  return encoders.make(name, rngs=rngs, **kwargs)


def _out_dim(encoder, view):
  out_dim = getattr(encoder, "out_dim", None)
  if isinstance(out_dim, int):
    return out_dim
  encoder.eval()
  z = encoder(jnp.asarray(view[:2]))
  encoder.train()
  return int(jnp.size(z[0]))


def build_model(config, images_BxHxWxC, views_fn, *, seed: int) -> MultiviewModel:
  """The `MultiviewModel` (g1, g2 or shared g1, critic) of a multiview config."""
  from mi_jax import critics  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import config_kwargs  # pylint: disable=g-import-not-at-top
  rngs = nnx.Rngs(seed)
  v1, v2 = views_fn(jnp.asarray(images_BxHxWxC[:2]), jax.random.key(0))  # Shapes.
  enc_kwargs = config_kwargs(config.encoder.get("kwargs"))
  g1 = _make_encoder(config.encoder.name, enc_kwargs, v1, rngs)
  if config.shared_encoder:
    if v1.shape[1:] != v2.shape[1:]:
      raise ValueError(
          f"config.shared_encoder=True needs views of one shape, got "
          f"{tuple(v1.shape[1:])} and {tuple(v2.shape[1:])}")
    g2 = None
  else:
    g2 = _make_encoder(config.encoder.name, enc_kwargs, v2, rngs)
  dim1 = _out_dim(g1, v1)
  dim2 = dim1 if g2 is None else _out_dim(g2, v2)
  critic = critics.make(config.critic.name, dim1, dim2, rngs=rngs,
                        **config_kwargs(config.critic.get("kwargs")))
  return MultiviewModel(g1, g2, critic)


def build(config, *, seed: int):
  """Tschannen et al. 2020's multiview objective as a `Method`: `I(g1(x1); g2(x2))`, any bound and critic.

  Config: `dataset` (+ the splits of `mi_jax.objectives.image_splits`),
  `views` (a `mi_jax.views.make_views` name), `noise_std`, `encoder`
  (`name`, `kwargs`), `shared_encoder`, `critic` and `bound` (`name`,
  `kwargs`, and `block_size`: > 0 selects the memory-linear blocked bound,
  negatives from the whole global batch on a mesh), `batch_size`. Evaluation: the probe on the first view's
  representation `g1(view1(x))`, beside the same probe on that view's raw
  pixels.
  """
  from mi_jax import views as views_lib  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives import _images  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import Method, config_kwargs  # pylint: disable=g-import-not-at-top
  if config.get("noise_std", 0.0) < 0:
    raise ValueError(f"config.noise_std must be >= 0, got {config.noise_std!r}")
  train_data, probe_train, probe_test = _images.image_splits(config)
  views_fn = views_lib.make_views(config.views)
  images = jnp.asarray(probe_train["image"][:2])

  def init_model(seed):
    # Built under jit: one compiled initialiser instead of one per eager op.
    return nnx.jit(lambda x: build_model(config, x, views_fn, seed=seed))(images)

  loss_fn = make_multiview_loss(
      views=views_fn, bound=config.bound.name,
      bound_kwargs=config_kwargs(config.bound.get("kwargs")) or None,
      noise_std=float(config.noise_std),
      block_size=int(config.bound.get("block_size", 0) or 0) or None)

  def features(model, images):
    v1, _ = views_fn(images, jax.random.key(0))
    z = model.encode1(v1)
    return z.reshape(z.shape[0], -1)

  def pixels(images):
    return views_fn(images, jax.random.key(0))[0]

  def format_results(results, config):
    lines = [
        f"held-out {config.bound.name} bound (test split, batch "
        f"{config.batch_size}): {results.get('eval/bound', float('nan')):.3f} nats",
        f"linear probe, learned features : {100 * results['probe/linear_acc']:.1f}%",
        f"linear probe, raw view pixels  : {100 * results['probe/pixel_linear_acc']:.1f}%",
        f"{config.probe.get('knn_k', 5)}-NN, learned features        : "
        f"{100 * results['probe/knn_acc']:.1f}%"]
    return "\n".join(lines)

  return Method(
      model=init_model(seed), loss_fn=loss_fn, train_data=train_data,
      heldout_batches=_images.split_batches(probe_test, config.batch_size),
      evaluations=[_images.probe_evaluation(
          features, probe_train, probe_test, raw_features=pixels,
          raw_name="pixel")],
      bound_key="mi",
      title=(f"{config.dataset} {config.get('views', '')}: {config.encoder.name}"
             f" / {config.critic.get('name', '')} / {config.bound.name}"),
      format_results=format_results, init_model=init_model)
