"""Bounds as estimation objectives: a critic model, its training loss, its read-out.

A `CriticModel` holds what one bound trains: the critic T(x, y), plus
  a learned log-baseline a(x) (an MLP x -> 1) for "tuba" and "interpolated",
    as in Poole et al. 2019 (sections 2.2 and 2.5): the bounds hold for any
    a(x) and are tight at a(x) = log E_{p(y)}[e^{T(x, y)}], so a is trained
    jointly with the critic on the same bound;
  MINE's moving average of E_Q[e^T] (log space) for "mine", an
    `EmaState` variable: not an `nnx.Param`, so it rides in the train state's
    `rest` and the library's train step carries it between steps.

Most bounds are trained and read out with the same function. Two are not:
  mine  trained with MINE's bias-corrected gradient, read out with its value,
        the Donsker-Varadhan bound;
  jsd   trained with the Jensen-Shannon f-GAN gradient (not an MI value in
        nats), read out with NWJ on the shifted critic T + 1 (Poole et al. 2019,
        "train with JS, read out with NWJ"): `jsd(..., readout="nwj")` unless
        options say readout="dv".

`loss_fn(objective)` is a `loss_fn(model, batch, key)` for
`mi_jax.training.make_train_step`: batch = (x_BxDx, y_BxDy), loss = -bound.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

# Bounds whose log-baseline a(x) is a learned network.
LEARNED_BASELINE = ("tuba", "interpolated")


class EmaState(nnx.Variable):
  """Log of MINE's moving average of E_Q[e^T]: state carried, not trained."""


class FeatureGate(nnx.Variable):
  """Scalar g of the square features [a, g a^2]: 1 or 0, set, not trained.

  With g = 0 the critic sees [a, 0]: the squares' input weights get no
  gradient from the bound, so it is the critic on a alone, in the shapes of
  the squared one (candidates of both kinds then share one program).
  """


@dataclasses.dataclass(frozen=True)
class Objective:
  """How one bound is trained and read out.

  Attributes:
    name: bound name (or the callable's name).
    value: `(scores_BxC, baseline_B or None, mask=None) -> nats`, the bound
      (read-out); `mask` marks positive pairs as in mi_jax.bounds.
    train_value: `(scores_BxC, baseline_B, ema, mask=None) -> (value,
      new_ema)`, whose gradient training ascends (MINE / JS / SMILE differ
      from `value`).
    learned_baseline: the model carries a baseline network a(x).
    moving_average: the model carries MINE's moving average.
    log_k_ceiling: True when the bound cannot exceed log(batch size).
    blocked: name of the memory-linear `mi_jax.bounds.blocked` function that
      computes `value` from separable embeddings, or None.
    group_value: None, or `(scores_BxG) -> nats` for the grouped batches of
      `loss_fn` (row i's positive in column i mod G, the other columns its
      negatives), equal to `value(scores_BxG, None, mask)` with the matching
      mask but in a few ops (InfoNCE: its gradient compiles in a fraction of
      the masked bound's time).
  """
  name: str
  value: Callable[[Any, Any], Any]
  train_value: Callable[[Any, Any, Any], tuple]
  learned_baseline: bool = False
  moving_average: bool = False
  log_k_ceiling: bool = False
  blocked: str | None = None
  group_value: Callable[[Any], Any] | None = None


def _bounds():
  from mi_jax import bounds  # pylint: disable=g-import-not-at-top
  return bounds


def bound_names() -> tuple:
  """Names accepted by `make_objective`."""
  return tuple(_bounds().NAMES)


def _same(value_fn):
  return lambda s, a, ema, mask=None: (value_fn(s, a, mask), ema)


def make_objective(bound, options: dict | None = None) -> Objective:
  """Returns the `Objective` for a bound name (see mi_jax.bounds.NAMES) or callable.

  A callable `fn(scores_BxB, **options) -> value` is used for both training and
  read-out. `options` go to the bound, e.g. {"clip": 5.0} for SMILE,
  {"alpha": 0.5} for the interpolated bound, {"decay": 0.99} for MINE.
  """
  options = dict(options or {})
  if callable(bound):
    def value(s, a, mask=None):
      if mask is not None:
        raise ValueError("a callable bound takes no mask; use negatives=None.")
      return bound(s, **options)
    return Objective(getattr(bound, "__name__", "custom"), value, _same(value))
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
    decay = options.get("decay", 0.99)
    unknown = set(options) - {"decay"}
    if unknown:
      raise ValueError(f"mine takes only the option 'decay'; got {unknown}.")

    def train(s, a, ema, mask=None):
      del a
      return fn(s, mask, ema=ema, decay=decay)  # one evaluation per step

    return Objective(bound, lambda s, a, mask=None: bounds.dv(s, mask), train,
                     moving_average=True, blocked="dv")
  if bound in LEARNED_BASELINE:
    value = lambda s, a, mask=None: fn(
        s, mask, log_baseline=0.0 if a is None else a, **options)
    return Objective(bound, value, _same(value), learned_baseline=True)
  if bound == "jsd":
    options.setdefault("readout", "nwj")
  value = lambda s, a, mask=None: fn(s, mask, **options)
  blocked = bound if bound in ("infonce", "dv", "nwj") and not options else None
  return Objective(bound, value, _same(value),
                   log_k_ceiling=bound == "infonce", blocked=blocked,
                   group_value=(_grouped_infonce if bound == "infonce"
                                and not options else None))


def _grouped_infonce(scores_BxG):
  """InfoNCE of grouped rows: mean_i [s_{i, i mod G} - logsumexp_j s_ij]
  + log G (van den Oord et al. 2018), each row against its G - 1 negatives."""
  b, g = scores_BxG.shape
  s = scores_BxG.astype(jnp.float32)
  pos_B = jnp.take_along_axis(s, (jnp.arange(b) % g)[:, None], axis=1)[:, 0]
  return jnp.mean(pos_B - jax.nn.logsumexp(s, axis=1)) + jnp.log(float(g))


class CriticModel(nnx.Module):
  """A critic plus the state its bound needs (see the module docstring).

  Attributes:
    critic: scores_BxC = critic(x_BxDx, y_CxDy).
    baseline: None, or an MLP x -> a(x) (learned log-baseline, one per row).
    log_ema: None, or an `EmaState` scalar (MINE), -inf = no average yet.
  """

  def __init__(self, critic: nnx.Module, objective: Objective, dim_x: int, *,
               rngs: nnx.Rngs, baseline_hidden: int = 64,
               bilinear_dim_y: int | None = None,
               second: nnx.Module | None = None,
               square_features: bool = False):
    self.critic = critic
    # Optional input features [x, x^2] (elementwise) for the critics: a
    # Gaussian log density ratio is quadratic, a Student-t one a function of
    # |x|^2 and |y|^2, so both become easier to fit. Functions of x and y
    # only: the MI the bound measures is unchanged.
    self.square_features = square_features
    self.square_gate = FeatureGate(jnp.ones((), jnp.float32)) if (
        square_features) else None
    # Optional second critic whose scores are added (e.g. a separable critic
    # beside a concat one: products g(x).h(y) come easily to the first,
    # general pair functions to the second).
    self.second = second
    # Optional bilinear skip term x^T W y (W starts at 0): a linear-Gaussian
    # dependence is learned by W at once, with few parameters.
    self.skip = None if bilinear_dim_y is None else nnx.Param(
        jnp.zeros((dim_x, bilinear_dim_y), jnp.float32))
    baseline = log_ema = None
    if objective.learned_baseline:
      baseline = nnx.Sequential(
          nnx.Linear(dim_x, baseline_hidden, rngs=rngs), nnx.relu,
          nnx.Linear(baseline_hidden, 1, rngs=rngs,
                     kernel_init=nnx.initializers.zeros))
    if objective.moving_average:
      log_ema = EmaState(jnp.full((), -jnp.inf, jnp.float32))
    self.baseline = baseline
    self.log_ema = log_ema

  def log_baseline(self, x_BxDx):
    """a(x) per row, float32 `[B]`, or None."""
    if self.baseline is None:
      return None
    return self.baseline(x_BxDx)[:, 0].astype(jnp.float32)

  def features(self, a_BxD):
    """The critics' input: a, or [a, g a^2] with square_features (gate g)."""
    if not self.square_features:
      return a_BxD
    return jnp.concatenate([a_BxD, self.square_gate[...] * a_BxD * a_BxD],
                           axis=-1)

  def __call__(self, x_BxDx, y_CxDy):
    fx, fy = self.features(x_BxDx), self.features(y_CxDy)
    scores_BxC = self.critic(fx, fy)
    if self.second is not None:
      scores_BxC = scores_BxC + self.second(fx, fy)
    if self.skip is not None:
      scores_BxC = scores_BxC + (x_BxDx @ self.skip[...]) @ y_CxDy.T
    return scores_BxC

  def pair_scores(self, x_BxDx, y_CxDy, cols_BxM):
    """out[i, m] = T(x_i, y_{cols[i, m]}), `[B, M]`: only the chosen pairs
    are scored when the critic can (ConcatMLP.pair_scores)."""
    fx, fy = self.features(x_BxDx), self.features(y_CxDy)
    if hasattr(self.critic, "pair_scores"):
      scores_BxM = self.critic.pair_scores(fx, fy, cols_BxM)
    else:
      scores_BxM = jnp.take_along_axis(self.critic(fx, fy), cols_BxM, axis=1)
    if self.second is not None:
      scores_BxM = scores_BxM + jnp.take_along_axis(
          self.second(fx, fy), cols_BxM, axis=1)
    if self.skip is not None:
      scores_BxM = scores_BxM + jnp.einsum(
          "bd,bmd->bm", x_BxDx @ self.skip[...], y_CxDy[cols_BxM])
    return scores_BxM


  def group_scores(self, x_BxDx, y_BxDy, group: int):
    """out[i, m] = T(x_i, y_{g(i) + m}), `[B, group]`: the B rows are split
    into B / group consecutive groups of `group` rows (g(i) = the first row
    of i's group) and every pair within a group is scored; row i's positive
    is column i mod group. No gather: each group is a dense `model(x, y)`.
    """
    b = x_BxDx.shape[0]
    if b % group:
      raise ValueError(f"{b} rows do not split into groups of {group}.")
    split = lambda a: a.reshape(b // group, group, a.shape[-1])
    scores_GxgXg = jax.vmap(self)(split(x_BxDx), split(y_BxDy))
    return scores_GxgXg.reshape(b, group)


def loss_fn(objective: Objective):
  """`loss_fn(model, batch, key) -> (-value, {"value": value})`.

  For `mi_jax.training.make_train_step`; `model` is a `CriticModel`. `batch`
  is `(x_BxDx, y_BxDy)` (every pair of the batch scored, positives on the
  diagonal) or `(x_BxDx, y_BxDy, cols_BxM)`: row i is scored against
  y_{cols[i, m]} only, where cols[i, m] == i marks its positive (negative
  sampling; the bounds get the matching mask), or `(x_BxDx, y_BxDy, g)`
  with a Python int g: every pair within each of the B / g consecutive
  groups of g rows is scored (`CriticModel.group_scores`; each row gets g - 1
  negatives without a gather). MINE's moving average is read
  from and written to `model.log_ema`, so the train step carries it in the
  state's `rest`.
  """

  def fn(model, batch, key):
    del key
    x_BxDx, y_BxDy = batch[:2]
    if len(batch) == 3 and isinstance(batch[2], int):
      group = batch[2]
      scores = model.group_scores(x_BxDx, y_BxDy, group)
      if objective.group_value is not None:
        value = objective.group_value(scores)
        return -value, {"value": value}
      mask = jnp.arange(group)[None, :] == (
          jnp.arange(x_BxDx.shape[0]) % group)[:, None]
    elif len(batch) == 3:
      cols_BxM = batch[2]
      scores = model.pair_scores(x_BxDx, y_BxDy, cols_BxM)
      mask = cols_BxM == jnp.arange(cols_BxM.shape[0])[:, None]
    else:
      scores, mask = model(x_BxDx, y_BxDy), None
    ema = None if model.log_ema is None else model.log_ema[...]
    value, new_ema = objective.train_value(
        scores, model.log_baseline(x_BxDx), ema, mask)
    if model.log_ema is not None:
      model.log_ema[...] = jax.lax.stop_gradient(new_ema)
    return -value, {"value": value}

  return fn
