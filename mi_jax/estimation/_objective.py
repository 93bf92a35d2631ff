"""Bound adapters for estimation: one training objective and one read-out per bound.

Most bounds are trained and read out with the same function. Two are not:
  mine  trained with MINE's bias-corrected gradient (moving average carried as
        state), read out with its value, the Donsker-Varadhan bound;
  jsd   trained with the Jensen-Shannon f-GAN gradient (not an MI value in
        nats), read out with NWJ on the shifted critic T + 1 (Poole et al. 2019,
        "train with JS, read out with NWJ"; at the JS optimum T = log p/q, so
        NWJ(T + 1) is tight): `jsd(..., readout="nwj")` unless options say
        readout="dv".
"""

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Objective:
  """How one bound is trained and read out.

  Attributes:
    name: bound name (or the callable's name).
    train: `(scores_BxB, state) -> (value, new_state)`; its gradient is what
      training ascends; `value` is the per-batch training curve.
    readout: `scores_BxB -> value` in nats, used on held-out batches.
    init_state: initial state (a float32 scalar; unused except by MINE).
    log_k_ceiling: True when the bound cannot exceed log(batch size).
  """
  name: str
  train: Callable[[Any, Any], tuple]
  readout: Callable[[Any], Any]
  init_state: Any
  log_k_ceiling: bool


def _bounds():
  from mi_jax import bounds  # pylint: disable=g-import-not-at-top
  return bounds


def bound_names() -> tuple:
  """Names accepted by `make_objective`."""
  return tuple(_bounds().NAMES)


def make_objective(bound, options: dict | None = None) -> Objective:
  """Returns the `Objective` for a bound name (see mi_jax.bounds.NAMES) or callable.

  A callable `fn(scores_BxB, **options) -> value` is used for both training and
  read-out. `options` go to the bound, e.g. {"clip": 5.0} for SMILE,
  {"alpha": 0.5} for the interpolated bound, {"decay": 0.99} for MINE.
  """
  options = dict(options or {})
  if callable(bound):
    fn = lambda s: bound(s, **options)
    return Objective(getattr(bound, "__name__", "custom"),
                     lambda s, st: (fn(s), st), fn, jnp.zeros((), jnp.float32),
                     False)
  if not isinstance(bound, str):
    raise ValueError(f"bound must be a name or a callable; got {bound!r}.")
  bounds = _bounds()
  try:
    fn = bounds.get(bound)
  except (ValueError, KeyError) as e:
    raise ValueError(
        f"unknown bound {bound!r}; choose one of {', '.join(bounds.NAMES)}."
    ) from e
  if bound == "mine":
    # State: (log moving average, first-step flag); the first step starts the
    # average at the batch value (mine's ema=None).
    def train(scores, state):
      ema, first = state
      value0, ema0 = fn(scores, ema=None, **options)
      value1, ema1 = fn(scores, ema=ema, **options)
      return (jnp.where(first, value0, value1),
              (jnp.where(first, ema0, ema1), jnp.zeros((), bool)))

    return Objective(bound, train, bounds.get("dv"),
                     (jnp.zeros((), jnp.float32), jnp.ones((), bool)), False)
  if bound == "jsd":
    options.setdefault("readout", "nwj")
    bound_fn = lambda s: fn(s, **options)
    return Objective(bound, lambda s, st: (bound_fn(s), st), bound_fn,
                     jnp.zeros((), jnp.float32), False)
  bound_fn = lambda s: fn(s, **options)
  return Objective(bound, lambda s, st: (bound_fn(s), st), bound_fn,
                   jnp.zeros((), jnp.float32), bound == "infonce")

