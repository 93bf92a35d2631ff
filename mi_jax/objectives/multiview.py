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

  Returns:
    `(loss, {"mi": mi})`.
  """
  bound_fn = _resolve_bound(bound)
  key_views, key_n1, key_n2 = jax.random.split(key, 3)
  v1, v2 = views(batch["image"], key_views)
  if noise_std > 0:
    v1 = v1 + noise_std * jax.random.normal(key_n1, v1.shape, v1.dtype)
    v2 = v2 + noise_std * jax.random.normal(key_n2, v2.shape, v2.dtype)
  scores_BxB = model(v1, v2)
  mi = jnp.asarray(bound_fn(scores_BxB, **(bound_kwargs or {})), jnp.float32)
  loss = -mi if target is None else jnp.abs(mi - target)
  return loss, {"mi": mi}


def make_multiview_loss(
    *,
    views: ViewsFn,
    bound: Union[str, Callable],
    bound_kwargs: Optional[dict] = None,
    noise_std: float = 0.0,
    target: Optional[float] = None,
):
  """Returns `loss_fn(model, batch, key)`: `multiview_loss` with options bound.

  A string `bound` is resolved once here, so a wrong name fails early.
  """
  return functools.partial(
      multiview_loss, views=views, bound=_resolve_bound(bound),
      bound_kwargs=bound_kwargs, noise_std=noise_std, target=target)
