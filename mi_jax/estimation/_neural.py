"""`estimate(x, y)`: a neural variational MI estimate read out on held-out samples.

The critic (mi_jax.critics) maps raw samples to a score matrix
`scores_BxB[i, j] = T(x_i, y_j)`; a bound (mi_jax.bounds) turns it into nats.
Training is compiled: one jitted function runs a `lax.scan` over a chunk of
Adam steps; between chunks the bound is evaluated on a validation split, which
drives early stopping and picks the parameters; the reported value is the bound
on a separate test split read once at those parameters, never the maximum seen
during training.
"""

import dataclasses
import functools
import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy import special

from mi_jax import bounds
from mi_jax import training
from mi_jax.estimation import _checks
from mi_jax.estimation import _objective

FLAG_STILL_RISING = "still_rising"
FLAG_DIVERGED = "diverged"
FLAG_LOG_K_CEILING = "log_k_ceiling"
FLAG_NEGATIVE = "far_below_zero"
FLAG_HELDOUT_ABOVE_TRAIN = "heldout_above_train"
FLAG_HIGH_VARIANCE = "high_variance"
FLAG_SKIPPED_STEPS = "skipped_steps"

# |estimate| beyond this many nats is not a plausible MI read-out.
DIVERGED_NATS = 100.0
# The read-out is a dense score matrix over the whole split up to this size.
DENSE_READOUT_MAX = 4096
# A concat critic's read-out scores this many rows (x all columns) at a time.
CONCAT_READOUT_ROWS = 16


@dataclasses.dataclass(frozen=True)
class EstimateResult:
  """What `estimate` returns.

  Attributes:
    mi: held-out point estimate, nats: the bound on the whole test split (all
      n_test^2 pairs; InfoNCE with K = n_test) at the parameters chosen on
      the validation split.
    stderr: its standard error, nats (see `estimate`), float64 on the host.
    bound: bound name.
    critic: critic name.
    steps: training steps run.
    stopped_early: True when early stopping ended training before `steps`.
    curve_steps: step count at each evaluation, `[E]`.
    curve_train: mean training-batch bound over each chunk, `[E]`.
    curve_heldout: validation (held-out) bound after each chunk, `[E]`.
    wall_time: seconds for the whole call (compilation included).
    flags: warnings (see `FLAGS`); `str(result)` prints each with advice.
    batch_size: training batch size K (and the size of the SE's subsets).
    n_train: training samples.
    n_heldout: held-out samples (validation + test halves).
    skipped_steps: train steps whose loss or gradient was not finite; the
      train step kept the previous parameters on those.
    heldout_batch_mean: mean bound over M random size-K test batches.
    train_batch_mean: the same read-out on M random size-K training batches
      at the same parameters (the "heldout_above_train" flag compares them).
    critic_options: the critic options read out (the chosen candidate when
      several were given).
    candidate_values: best validation value of each candidate, in order.
  """
  mi: float
  stderr: float
  bound: str
  critic: str
  steps: int
  stopped_early: bool
  curve_steps: np.ndarray
  curve_train: np.ndarray
  curve_heldout: np.ndarray
  wall_time: float
  flags: tuple
  batch_size: int
  n_train: int
  n_heldout: int
  skipped_steps: int = 0
  heldout_batch_mean: float = float("nan")
  train_batch_mean: float = float("nan")
  critic_options: dict = dataclasses.field(default_factory=dict)
  candidate_values: tuple = ()

  @property
  def still_rising(self) -> bool:
    return FLAG_STILL_RISING in self.flags

  @property
  def diverged(self) -> bool:
    return FLAG_DIVERGED in self.flags

  @property
  def hit_ceiling(self) -> bool:
    return FLAG_LOG_K_CEILING in self.flags

  @property
  def plausible(self) -> bool:
    """No flag says the read-out is implausible (rising/ceiling excepted)."""
    return not set(self.flags) & set(IMPLAUSIBLE)

  def __float__(self) -> float:
    return float(self.mi)

  def __str__(self) -> str:
    text = f"{self.mi:.4f} ± {self.stderr:.4f} nats"
    for flag in self.flags:
      text += f"  [{flag.upper() if flag in IMPLAUSIBLE else flag}: "
      text += f"{_FLAG_ADVICE[flag](self)}]"
    return text


_FLAG_ADVICE = {
    FLAG_STILL_RISING: lambda r: (
        "still rising at the end of training: increase steps"),
    FLAG_DIVERGED: lambda r: (
        f"diverged: a non-finite value, or |estimate| > {DIVERGED_NATS:g} "
        "nats; do not use this number. Lower lr, use "
        "preprocess='gaussianize', or a bounded bound (smile, infonce)"),
    FLAG_LOG_K_CEILING: lambda r: (
        f"at the InfoNCE ceiling log n_test = {math.log(r.n_heldout - r.n_heldout // 2):.3f}: the "
        "true MI may be higher; use more samples or another bound"),
    FLAG_NEGATIVE: lambda r: (
        "a lower bound far below zero: the critic failed (MI >= 0); the "
        "value says nothing about the MI. Try preprocess='gaussianize', "
        "another bound or a lower lr"),
    FLAG_HELDOUT_ABOVE_TRAIN: lambda r: (
        f"held-out value {r.heldout_batch_mean:.3f} far above the training "
        f"value {r.train_batch_mean:.3f} (same read-out, size-K batches): "
        "implausible for a trained critic (train/test mismatch?)"),
    FLAG_HIGH_VARIANCE: lambda r: (
        "exploding variance across held-out batches: the estimate is "
        "dominated by a few samples (heavy tails?); try "
        "preprocess='gaussianize' or a lower-variance bound (infonce, smile)"),
    FLAG_SKIPPED_STEPS: lambda r: (
        f"{r.skipped_steps} train steps had a non-finite loss or gradient "
        "and were skipped"),
}
FLAGS = tuple(_FLAG_ADVICE)
# Flags that say the number should not be trusted.
IMPLAUSIBLE = (FLAG_DIVERGED, FLAG_NEGATIVE, FLAG_HELDOUT_ABOVE_TRAIN,
               FLAG_HIGH_VARIANCE)


# ----------------------------------------------------------------------------
# Compiled pieces.


def batch_indices(rng: np.random.Generator, n: int, steps: int,
                  batch_size: int) -> np.ndarray:
  """`[steps, batch_size]` int32 indices: epochs of random permutations of n.

  Each row has no repeated index (a repeated sample would be a positive pair
  counted as a negative). Made on the host with NumPy: a sort inside the
  compiled step would triple its compile time.
  """
  per_perm = n // batch_size
  n_perms = -(-steps // per_perm)
  idx = np.stack([rng.permutation(n)[:per_perm * batch_size]
                  for _ in range(n_perms)]).reshape(-1, batch_size)
  return idx[:steps].astype(np.int32)


def _make_critic(name, dim_x, dim_y, rngs, options):
  from mi_jax import critics  # pylint: disable=g-import-not-at-top
  if not isinstance(name, str):
    raise ValueError(f"critic must be a name; got {name!r}.")
  try:
    return critics.make(name, dim_x, dim_y, rngs=rngs, **options)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"could not build critic {name!r} with options "
                     f"{options}: {e}") from e


def make_critic_model(objective, critic, dim_x, dim_y, *, seed=0,
                      critic_options=None):
  """A `CriticModel` (critic + the bound's state) for `objective`.

  `critic` is a name for `mi_jax.critics.make`; `seed` an int or a PRNG key.
  Train it with `mi_jax.training.make_train_step(graphdef, tx,
  estimation.loss_fn(objective))`.
  """
  rngs = nnx.Rngs(seed)
  options = dict(critic_options or {})
  skip = options.pop("bilinear_skip", False)
  square = options.pop("square_features", False)
  fx, fy = (2 * dim_x, 2 * dim_y) if square else (dim_x, dim_y)
  second = None
  if critic == HYBRID:  # concat + separable, scores added
    sep = options.pop("separable", DEFAULT_CRITIC_OPTIONS["separable"])
    second = _make_critic("separable", fx, fy, rngs, dict(sep))
    _zero_output_layer(second)
    critic = "concat"
  model = _objective.CriticModel(
      _make_critic(critic, fx, fy, rngs, options), objective, dim_x,
      rngs=rngs, bilinear_dim_y=dim_y if skip else None, second=second,
      square_features=square)
  _zero_output_layer(model.critic)
  return model


def _zero_output_layer(critic):
  """Starts the critic at T(x, y) = 0 by zeroing its last linear layer.

  With random last layers a separable critic's initial scores reach +-20 on
  standardised inputs, so e^T terms start at e^20: MINE's moving average
  then lags by thousands of steps and its training diverges, and NWJ / TUBA
  start with huge gradients. From T = 0 every bound starts at a finite value
  near 0; the gradients reaching the zeroed layer are non-zero, so it learns.
  """
  for path in (("h", "layers"), ("mlp", "layers")):
    layers = getattr(getattr(critic, path[0], None), path[1], None)
    if layers is not None:
      last = layers[-1]
      last.kernel[...] = jnp.zeros_like(last.kernel[...])
      return
  if hasattr(critic, "kernel"):  # bilinear
    critic.kernel[...] = jnp.zeros_like(critic.kernel[...])


# Defaults of estimate() per critic: sized for 10-100k samples of 1-50 dims,
# fast on a CPU; an embedding width >= the data dimension lets a separable
# critic represent the Gaussian cross term x^T W y.
# A list of option dicts is a list of candidates: each is trained and the one
# with the best validation value is read out (see `estimate`); a candidate's
# "weight_decay" overrides estimate()'s. concat: 64-unit critics on (x, y)
# with and without weight decay (it curbs overfitting on sparse dependence
# but caps large scores, i.e. high MI), and on ([x, x^2], [y, y^2])
# (Student-t dependence is through |x|^2, |y|^2), trained as one program;
# and a low-rank quadratic critic without weight decay (its own, small
# program; "critic" overrides the name for one candidate), of rank = the
# canonical correlations above the noise edge (`_noise_edge_rank`): the
# log density ratio of a Gaussian copula exactly, with few parameters (the
# MLPs overfit a sparse 25+25-d Gaussian; docs/estimation.md).
DEFAULT_CRITIC_OPTIONS = {
    "separable": {"hidden": (128,), "out_dim": 32},
    "concat": ({"hidden": (64,)}, {"hidden": (64,), "square_features": True},
               {"hidden": (64,), "weight_decay": 0.0},
               {"critic": "quadratic", "rank": "auto", "weight_decay": 0.0}),
    "concat+separable": {"hidden": (128,)},
}
# weight_decay=None: AdamW's decoupled weight decay per critic (else 0).
DEFAULT_WEIGHT_DECAY = {"concat": 1.0}
# A concat critic plus a separable one, their scores added.
HYBRID = "concat+separable"
# negatives="auto": negatives per row in training, per critic (None: all K-1).
DEFAULT_NEGATIVES = {"concat": 15, HYBRID: 15}


def _freeze(options):
  return tuple(sorted((options or {}).items()))


def _structure(options):
  """Candidates with equal keys share one program: they differ only in
  weight decay and square features (a gate, `CriticModel.square_gate`).
  Lists count as tuples; a string, so that any options group."""
  return repr(_freeze({k: tuple(v) if isinstance(v, list) else v
                       for k, v in options.items()
                       if k not in ("weight_decay", "square_features")}))


def _row_chunked_scores(model, x_NxDx, y_MxDy, rows):
  """`model(x, y)` `[N, M]` computed `rows` rows at a time (bounded memory)."""
  n = x_NxDx.shape[0]
  if n <= rows:
    return model(x_NxDx, y_MxDy)
  pad = -n % rows
  x_blocks = jnp.pad(x_NxDx, ((0, pad), (0, 0))).reshape(
      -1, rows, x_NxDx.shape[1])
  s = jax.lax.map(lambda xb: model(xb, y_MxDy), x_blocks)
  return s.reshape(-1, y_MxDy.shape[0])[:n]


class _Fit(NamedTuple):
  """One trained candidate of `estimate` (see `_train_group`)."""
  compiled: Any
  critic: str
  options: dict
  index: int
  best_state: Any
  best: float
  flags: list
  steps: int
  skipped: int
  stopped_early: bool
  curve_steps: np.ndarray
  curve_train: np.ndarray
  curve_valid: np.ndarray


class Compiled(NamedTuple):
  """The pieces of one estimate() configuration (see `_compiled`)."""
  objective: Any
  graphdef: Any
  tx: Any
  init: Callable
  train_chunk: Callable
  evaluate: Callable
  readout: Callable
  full_readout: Callable


def _member_mean(graphdef, state, fn):
  """Mean over the ensemble members (leading axis of `state`) of `fn(model)`.

  `fn(model)` returns an array or None; members are merged one at a time
  inside a `vmap`, so the ensemble's scores are the members' scores
  averaged: T(x, y) = 1/E sum_e T_e(x, y).
  """
  out = jax.vmap(lambda p, r: fn(training.merge_model(graphdef, p, r)))(
      state.params, state.rest)
  return None if out is None else out.mean(0)


def _first_layers(critic):
  """The linear layers that read the critic's input, and their init factor
  for a zero square gate (fan-in halved: sqrt 2, bilinear 2)."""
  from mi_jax import critics  # pylint: disable=g-import-not-at-top
  if isinstance(critic, critics.ConcatMLP):
    return [critic.mlp.layers[0]], math.sqrt(2.0)
  if isinstance(critic, critics.Separable):
    return [critic.g.layers[0], critic.h.layers[0]], math.sqrt(2.0)
  if isinstance(critic, critics.Bilinear):
    return [critic], 2.0
  return [], 1.0


def _set_square_gate(model, gate):
  """Sets the square-feature gate (1: [a, a^2], 0: a alone) of a model with
  square_features; with gate 0 the first layers' kernels are scaled to the
  init scale of the critic on a alone (their variance follows 1 / fan-in,
  and half the fan-in is the zeroed squares)."""
  model.square_gate[...] = jnp.asarray(gate, jnp.float32)
  for critic in (model.critic, model.second):
    layers, factor = _first_layers(critic) if critic is not None else ([], 1)
    for layer in layers:
      layer.kernel[...] = layer.kernel[...] * jnp.where(gate > 0, 1.0, factor)


def _key(seed):
  """The estimator's PRNG key: "unsafe_rbg" (XLA's RngBitGenerator) compiles
  several times faster on a CPU than the default threefry, and an
  initialisation needs no more than its statistical quality."""
  return jax.random.key(seed, impl="unsafe_rbg")


@functools.lru_cache(maxsize=16)
def _compiled(bound, bound_options, critic, critic_options, dim_x, dim_y,
              max_grad_norm=10.0):
  """`Compiled` functions for one configuration.

  Cached across calls, so repeated estimates with one configuration compile
  once (per data shape, candidate count and ensemble size). Every train state
  carries two leading axes, candidates C and ensemble members E. Candidates
  share the model's shapes and differ in learning rate, weight decay (both in
  the optimizer state) and square-feature gate (in the model's `rest`); they
  are `vmap`ped, so C candidates run as one program. Members are trained
  independently, from their own initialisations and batch orders, and
  `lax.map`ped; the read-outs score pairs with the members' mean score.
  Training uses the library's step (`mi_jax.training.make_train_step`: a
  non-finite loss or gradient leaves the state unchanged) scanned over a
  chunk of steps (`make_multi_step`).

    init(seed, lr_C, wd_C, gate_C, ensemble) -> state_CxE  (jitted: eager
      initialisation would compile every initializer op separately)
    train_chunk(state, x, y, idx_CxExSxB, seed, chunk, group) -> (state,
      values_CxExS, finite_CxExS); group: None (all pairs of a batch) or g
      (pairs within groups of g rows, `loss_fn`)
    evaluate(state, x_NxDx, y_NxDy, sel_MxK, with_batches) -> (value_C,
      batch_values_CxM): the bound on all N^2 pairs and, when with_batches,
      on the M size-K sub-matrices of the same scores (rows and columns
      sel[m]); N <= DENSE_READOUT_MAX
    readout(state, x_MxKxDx, y_MxKxDy) -> values_CxM, the bound per batch
    full_readout(state, x, y) -> value_C: blocked (memory-linear) read-out
      of a separable critic, any N
  """
  objective = _objective.make_objective(bound, dict(bound_options))
  build = lambda key: make_critic_model(objective, critic, dim_x, dim_y,
                                        seed=key,
                                        critic_options=dict(critic_options))
  graphdef, _, _ = training.split_model(nnx.eval_shape(lambda: build(0)))
  gated = dict(critic_options).get("square_features", False)
  # Clipping the global gradient norm before Adam keeps its second moment
  # finite whatever the data; the learning rate and weight decay live in the
  # optimizer state (no recompile per value; one per candidate).
  # The optimizer works on the parameters raveled into one vector
  # (`optax.flatten`: the same update, a few ops per step instead of a few
  # per parameter array; measured 25% less CPU per step at the default size).
  tx = optax.flatten(optax.chain(
      optax.clip_by_global_norm(max_grad_norm),
      optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3,
                                            weight_decay=0.0)))
  loss = _objective.loss_fn(objective)
  rows = (CONCAT_READOUT_ROWS if critic in ("concat", "concat_mlp", HYBRID)
          else DENSE_READOUT_MAX)

  def member_keys(key, e):
    return jnp.stack([key] + [jax.random.fold_in(key, i) for i in range(1, e)])

  def train_chunk(state_CE, x_train, y_train, idx_CxExSxB, seed, chunk, group):
    def gather(model, idx_B, k):
      x, y = x_train[idx_B], y_train[idx_B]
      return loss(model, (x, y) if group is None else (x, y, group), k)

    multi = training.make_multi_step(
        training.make_train_step(graphdef, tx, gather), idx_CxExSxB.shape[2])
    keys_E = member_keys(jax.random.fold_in(_key(seed), chunk),
                         idx_CxExSxB.shape[1])

    def candidate(state_E, idx_ExSxB):
      return jax.lax.map(lambda a: multi(*a), (state_E, idx_ExSxB, keys_E))

    state_CE, metrics = jax.vmap(candidate)(state_CE, idx_CxExSxB)
    return state_CE, metrics["value"], metrics["finite"]

  def init(seed, lr_C, wd_C, gate_C, ensemble):
    keys_E = member_keys(_key(seed), ensemble)

    def one(key, lr, wd, gate):
      model = build(key)
      if gated:
        _set_square_gate(model, gate)
      _, state = training.init_train_state(model, tx)
      hyper = state.opt_state[1].hyperparams
      hyper["learning_rate"] = jnp.asarray(lr, jnp.float32)
      hyper["weight_decay"] = jnp.asarray(wd, jnp.float32)
      return state

    members = lambda lr, wd, g: jax.vmap(lambda k: one(k, lr, wd, g))(keys_E)
    return jax.vmap(members)(lr_C, wd_C, gate_C)

  def per_candidate(fn):
    """fn(state_E, *args) mapped over the candidates (sequentially: a
    read-out's score matrices are large)."""
    return lambda state_CE, *args: jax.lax.map(
        lambda st: fn(st, *args), state_CE)

  def scores_fn(state_E):
    return lambda x, y: _member_mean(graphdef, state_E, lambda m: m(x, y))

  def baseline_fn(state_E, x):
    return _member_mean(graphdef, state_E, lambda m: m.log_baseline(x))

  def evaluate_one(state_E, x_NxDx, y_NxDy, sel_MxK, with_batches):
    scores_NxN = _row_chunked_scores(scores_fn(state_E), x_NxDx, y_NxDy, rows)
    a_N = baseline_fn(state_E, x_NxDx)
    value = objective.value(scores_NxN, a_N)

    def batches(_):
      sub = lambda sel: objective.value(
          scores_NxN[sel[:, None], sel[None, :]],
          None if a_N is None else a_N[sel])
      return jax.lax.map(sub, sel_MxK).astype(jnp.float32)

    zeros = lambda _: jnp.zeros(sel_MxK.shape[:1], jnp.float32)
    return value, jax.lax.cond(with_batches, batches, zeros, None)

  def readout_one(state_E, x_MxBxDx, y_MxBxDy):
    score = scores_fn(state_E)
    return jax.lax.map(
        lambda xy: objective.value(score(*xy), baseline_fn(state_E, xy[0])),
        (x_MxBxDx, y_MxBxDy))

  def full_readout_one(state_E, x_NxDx, y_NxDy):
    """Bound on all N^2 pairs from separable embeddings, memory-linear."""
    n = x_NxDx.shape[0]
    # mean_e g_e(x).h_e(y) = [g_1 .. g_E](x) / E . [h_1 .. h_E](y)
    emb = lambda f: jax.vmap(lambda p, r: f(training.merge_model(
        graphdef, p, r)))(state_E.params, state_E.rest)
    g_ExNxD = emb(lambda m: m.critic.g(m.features(x_NxDx)))
    h_ExNxD = emb(lambda m: m.critic.h(m.features(y_NxDy)))
    e = g_ExNxD.shape[0]
    cat = lambda z: jnp.moveaxis(z, 0, 1).reshape(n, -1)
    fn = getattr(bounds.blocked, objective.blocked)
    return fn(cat(g_ExNxD) / e, cat(h_ExNxD))

  return Compiled(objective, graphdef, tx,
                  jax.jit(init, static_argnums=4),
                  jax.jit(train_chunk, donate_argnums=0, static_argnums=6),
                  jax.jit(per_candidate(evaluate_one)),
                  jax.jit(per_candidate(readout_one)),
                  jax.jit(per_candidate(full_readout_one)))


def _can_read_full(objective, critic, n, critic_options):
  skip = dict(critic_options or {}).get("bilinear_skip", False)
  return n <= DENSE_READOUT_MAX or (
      objective.blocked is not None and critic == "separable" and not skip)


# ----------------------------------------------------------------------------
# estimate().


PREPROCESS = ("standardize", "gaussianize", "canonical", "none")


def _standardize(x_NxD, train_idx):
  """z-scores every column with the training rows' mean and std."""
  mean = x_NxD[train_idx].mean(0)
  std = x_NxD[train_idx].std(0)
  return (x_NxD - mean) / np.where(std > 0, std, 1.0)


def _gaussianize(x_NxD, train_idx):
  """Per column: u = ECDF_train(x) (interpolated, kept in (0, 1)), z = Phi^-1(u).

  A monotone map of each coordinate, fitted on the training rows only and
  applied to all rows, so held-out rows do not leak into it. I(f(X); g(Y)) =
  I(X; Y) for invertible f, g (up to the ECDF's resolution), and the
  marginals become near-Gaussian: heavy tails no longer blow up e^T terms.
  """
  n = len(train_idx)
  out = np.empty(x_NxD.shape, np.float64)
  for j in range(x_NxD.shape[1]):
    ref = np.sort(x_NxD[train_idx, j].astype(np.float64))
    grid = (np.arange(n) + 0.5) / n
    u = np.interp(x_NxD[:, j], ref, grid, left=0.5 / (n + 1),
                  right=1.0 - 0.5 / (n + 1))
    out[:, j] = special.ndtri(u)
  return out


def _canonical(x_NxDx, y_NxDy, train_idx, floor=1e-6):
  """(x - mean_x) Wx, (y - mean_y) Wy: each side in canonical coordinates.

  See `_canonical_maps`.
  """
  mx, wx, my, wy = _canonical_maps(x_NxDx, y_NxDy, train_idx, floor)
  return (x_NxDx - mx) @ wx, (y_NxDy - my) @ wy


def _noise_edge_rank(x_NxDx, y_NxDy, max_rank=None):
  """Canonical correlations of (x, y) above the noise edge: a rank for the
  quadratic critic, from the rows given (the training rows).

  Under independence the squared sample canonical correlations of n rows of
  p- and q-dimensional data fill [0, l+] with l+ = (sqrt(a (1 - b)) +
  sqrt(b (1 - a)))^2, a = p / n, b = q / n (Wachter 1980); the count above
  l+, between 1 and min(p, q, max_rank).
  """
  n = len(x_NxDx)
  idx = np.arange(n)
  mx, wx, my, wy = _canonical_maps(x_NxDx, y_NxDy, idx)
  r = min(x_NxDx.shape[1], y_NxDy.shape[1])
  rho_R = np.mean(((x_NxDx - mx) @ wx)[:, :r] * ((y_NxDy - my) @ wy)[:, :r],
                  axis=0)
  a, b = x_NxDx.shape[1] / n, y_NxDy.shape[1] / n
  edge = (math.sqrt(a * max(1 - b, 0)) + math.sqrt(b * max(1 - a, 0))) ** 2
  top = r if max_rank is None else min(r, max_rank)
  return int(np.clip(np.sum(rho_R ** 2 > edge), 1, top))


def _canonical_maps(x_NxDx, y_NxDy, train_idx, floor=1e-6):
  """Invertible linear maps of each side to canonical coordinates (CCA).

  On the training rows: covariances Sxx, Syy, Sxy; Wx = Sxx^-1/2 U and
  Wy = Syy^-1/2 V with U diag(rho) V^T the full SVD of
  Sxx^-1/2 Sxy Syy^-1/2 (eigenvalues of Sxx, Syy floored at `floor` times
  their largest, so the maps stay invertible). Returns (mean_x, Wx,
  mean_y, Wy); (x - mean_x) Wx and (y - mean_y) Wy have unit variance on the
  training rows and cross-covariance diag(rho), the linearly dependent
  directions first. I(XWx; YWy) = I(X; Y)
  for invertible Wx, Wy (Hotelling 1936 for the canonical correlations).
  """
  def inv_sqrt(cov):
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, floor * max(w.max(), 1e-300))
    return (v / np.sqrt(w)) @ v.T

  xt, yt = x_NxDx[train_idx], y_NxDy[train_idx]
  mx, my = xt.mean(0), yt.mean(0)
  xc, yc = xt - mx, yt - my
  n = len(train_idx)
  kx = inv_sqrt(xc.T @ xc / n)
  ky = inv_sqrt(yc.T @ yc / n)
  u, _, vt = np.linalg.svd(kx @ (xc.T @ yc / n) @ ky, full_matrices=True)
  return mx, kx @ u, my, ky @ vt.T


def _stderr(values_M, batch_size, n_heldout, *, mean_of_batches):
  """SE of the held-out estimate from M random size-K subsets of n samples.

  In float64 on the host. A size-K batch estimate has variance ~ s^2 / K;
  across random subsets of a finite set of n, var_M ~ s^2 / K (1 - K/n); an
  estimate from all n samples has sampling variance ~ s^2 / n =
  var_M K / (n - K). When the estimate is itself the mean of the M batches
  (`mean_of_batches`), var_M / M is added for using M subsets.
  """
  values_M = np.asarray(values_M, np.float64)
  m = len(values_M)
  with np.errstate(all="ignore"):
    var = float(np.var(values_M, ddof=1)) if m > 1 else 0.0
  if not np.isfinite(var):
    return float("inf") if np.isfinite(values_M).all() else float("nan")
  extra = var / m if mean_of_batches else 0.0
  if n_heldout > batch_size:
    return math.sqrt(var * batch_size / (n_heldout - batch_size) + extra)
  return math.sqrt(var)  # n == K: every subset is the whole set


def _implausible(mi, stderr, batch_mean_M, train_value):
  """Flags for a read-out that cannot be trusted (see `_FLAG_ADVICE`)."""
  flags = []
  if not np.isfinite(mi) or abs(mi) > DIVERGED_NATS:
    return [FLAG_DIVERGED]
  if mi < -max(0.1, 3.0 * stderr):
    flags.append(FLAG_NEGATIVE)
  values_M = np.asarray(batch_mean_M, np.float64)
  se_batch = float(np.std(values_M, ddof=1) / math.sqrt(len(values_M))
                   ) if len(values_M) > 1 else 0.0
  if np.isfinite(train_value) and values_M.mean() > (
      train_value + 0.1 + 0.1 * abs(train_value) + 3.0 * se_batch):
    flags.append(FLAG_HELDOUT_ABOVE_TRAIN)
  if not np.isfinite(stderr) or stderr > 0.25 + 0.25 * abs(mi):
    flags.append(FLAG_HIGH_VARIANCE)
  return flags


def _still_rising(curve_steps, curve_heldout, stderr):
  """Held-out curve over the last quarter of training rose by > 2 SE."""
  e = len(curve_heldout)
  if e < 4:
    return False
  w = max(3, e // 4)
  s, v = curve_steps[-w:], curve_heldout[-w:]
  slope = np.polyfit(s, v, 1)[0]
  rise = slope * (s[-1] - s[0])
  return bool(rise > max(2.0 * stderr, 0.01 * abs(v[-1]), 1e-3))


def _heldout_batches(rng, x_NxDx, y_NxDy, idx, batch_size, eval_batches):
  """M random size-K batches (no repeats within one) of the rows `idx`."""
  sel_MxK = np.stack([idx[rng.choice(len(idx), batch_size, replace=False)]
                      for _ in range(eval_batches)])
  return jnp.asarray(x_NxDx[sel_MxK]), jnp.asarray(y_NxDy[sel_MxK])


def estimate(x, y, *, bound: str = "infonce", critic: str = "concat",
             batch_size: int = 256, steps: int = 5000, lr: float = 5e-4,
             seed: int = 0, holdout: float = 0.2, eval_every: int = 250,
             patience: int | None = 8, min_delta: float = 0.01,
             eval_batches: int = 32, preprocess: str = "gaussianize",
             bound_options: dict | None = None,
             critic_options: dict | None = None,
             negatives: int | None | str = "auto",
             weight_decay: float | None = None,
             ensemble: int = 1) -> EstimateResult:
  """Neural variational estimate of I(X; Y) in nats, read out on held-out data.

  The samples are split at random into train (1 - holdout) and held-out
  parts, and the held-out part into two halves, validation and test. Each
  column is mapped by `preprocess` (fitted on the training rows). A critic
  T(x, y) (with the state its bound needs: a learned baseline a(x) for TUBA /
  I_alpha, MINE's moving average) is trained with the library's train step
  (`mi_jax.training.make_train_step`, non-finite guard) and AdamW after
  global-norm clipping, to maximise `bound` on random training batches of
  size K = batch_size (no repeats within a batch); with `negatives=M` each
  batch is split into groups of M + 1 rows and every pair within a group
  is scored (each row against its positive and M others). Every
  `eval_every` steps the bound is read out on the whole validation split.
  Training stops at `steps`, or early when the validation value has not
  improved by `min_delta` for `patience` evaluations (None: never). The
  estimate is the bound on all n_test^2 pairs of the test split (InfoNCE
  with K = n_test) at the parameters with the best validation value: the
  test split is read once, so the estimate is not the maximum of noisy
  values seen during training.

  Defaults (chosen on issue 9's benchmark rows, see docs/estimation.md):
  InfoNCE, a concat critic trained with 15 negatives per row (about the cost
  of a separable critic on all K^2 pairs), four candidates of which the
  best on validation is read out (one hidden layer of 64 units on (x, y)
  and on ([x, x^2], [y, y^2]), both with AdamW weight decay 1.0, and on
  (x, y) without weight decay; a low-rank quadratic critic, the Gaussian
  log density ratio's form, of rank = the canonical correlations above
  the noise edge, without weight decay), gaussianized columns (heavy
  tails never reach the critic).

  Standard error (float64, host): SE^2 = var_M K / (n_t - K), where var_M is
  the variance of the bound over M random size-K test batches and n_t the
  test size (the subsampling approximation; it ignores the critic's own
  training noise). Implausible read-outs are flagged (see `FLAGS`).

  Bounds: InfoNCE (van den Oord et al. 2018), NWJ/TUBA (Nguyen et al. 2010;
  Poole et al. 2019), DV / MINE (Belghazi et al. 2018), JS trained, NWJ read
  out (Hjelm et al. 2019; Poole et al. 2019), interpolated (Poole et al.
  2019), SMILE (Song & Ermon 2020). See mi_jax.bounds.

  Args:
    x: samples `[N, Dx]` (2-D; reshape a scalar variable with x.reshape(-1, 1)).
    y: samples `[N, Dy]`, paired row by row with x.
    bound: a name in mi_jax.bounds.NAMES, or a callable `fn(scores) -> value`.
    critic: a name for mi_jax.critics.make ("separable", "concat", "bilinear",
      "inner_product"), or "concat+separable" (both, scores added).
    batch_size: K, training batch size (and size of the SE's test subsets).
    steps: maximum training steps (rounded up to whole chunks).
    lr: Adam learning rate.
    seed: seed of the split, the critic's initialisation and the batches.
    holdout: fraction of samples held out (half validation, half test).
    eval_every: steps per compiled chunk between validation evaluations.
    patience: evaluations without improvement before stopping; None disables.
    min_delta: improvement in nats that resets the patience counter.
    eval_batches: M, random test batches for the standard error (and the
      validation value when the whole split cannot be read at once).
    preprocess: per-column map fitted on the training split (MI is invariant
      to invertible per-coordinate maps): "gaussianize" (default: training
      ECDF then the normal quantile; heavy tails and monotone warps vanish),
      "standardize" (z-score), "canonical" (gaussianize, then an invertible
      linear map of each side to its canonical (CCA) coordinates, fitted on
      the training rows: MI unchanged, linear dependence on the first
      coordinates) or "none".
    bound_options: keyword options of the bound, e.g. {"clip": 5.0} (SMILE).
    critic_options: keyword options of the critic (see mi_jax.critics);
      None: DEFAULT_CRITIC_OPTIONS. {"bilinear_skip": True} adds x^T W y,
      {"square_features": True} feeds [x, x^2], [y, y^2]; {"critic":
      "quadratic", "rank": "auto"} trains that candidate with another
      critic (here the quadratic one, of noise-edge rank). A list of such
      dicts: candidates, each trained (its own batch order; the first
      candidate's batches are those of a single-candidate call), the one
      with the best validation value read out on the test split;
      candidates that differ only in "weight_decay" and "square_features"
      train as one vmapped program (a gate of 0 on the squares).
    negatives: negatives per row in training: None (all K - 1), an integer
      M (groups of M + 1 rows; K rounded down to a multiple of M + 1), or
      "auto" (DEFAULT_NEGATIVES: 15 for concat critics, else all).
    weight_decay: AdamW's decoupled weight decay (per step, params shrink by
      lr * weight_decay); None: DEFAULT_WEIGHT_DECAY per critic, else 0.
    ensemble: E critics per candidate, each from its own initialisation and
      batch order; pairs are scored with their mean score
      1/E sum_e T_e(x, y) in validation and read-out (training is per
      member). E times the training cost.

  Returns:
    An `EstimateResult`; `str(result)` is "mi ± stderr nats [flags]".
  """
  t0 = time.perf_counter()
  x_NxDx, y_NxDy = _checks.check_xy(x, y, min_samples=4)
  n, dim_x = x_NxDx.shape
  dim_y = y_NxDy.shape[1]
  if not 0.0 < holdout < 1.0:
    raise ValueError(f"holdout must be a fraction in (0, 1); got {holdout}.")
  for name, v in (("batch_size", batch_size), ("steps", steps),
                  ("eval_every", eval_every), ("eval_batches", eval_batches),
                  ("ensemble", ensemble)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{name} must be a positive integer; got {v!r}.")
  if batch_size < 2:
    raise ValueError("batch_size must be >= 2 (each batch needs negatives).")
  n_heldout = int(round(holdout * n))
  n_valid = n_heldout // 2
  n_test = n_heldout - n_valid
  n_train = n - n_heldout
  if batch_size > min(n_train, n_valid):
    raise ValueError(
        f"batch_size={batch_size} is larger than the data: {n} samples give "
        f"{n_train} for training and {n_valid} + {n_test} held out for "
        f"validation + test (holdout={holdout}); use batch_size <= "
        f"{max(min(n_train, n_valid), 1)}, a larger holdout, or more samples.")
  if not lr > 0:
    raise ValueError(f"lr must be positive; got {lr}.")
  if isinstance(negatives, str) and negatives == "auto":
    negatives = DEFAULT_NEGATIVES.get(critic)
    if (negatives is not None and bound == "interpolated") or callable(bound):
      negatives = None
    if negatives is not None:
      negatives = min(negatives, batch_size - 1)
  if negatives is not None:
    if (isinstance(negatives, bool) or not isinstance(negatives, (int, np.integer))
        or not 1 <= negatives <= batch_size - 1):
      raise ValueError(f"negatives must be None (all batch_size - 1 = "
                       f"{batch_size - 1}) or an integer in [1, "
                       f"{batch_size - 1}]; got {negatives!r}.")
    if bound == "interpolated" or callable(bound):
      raise ValueError(f"negatives= needs a bound that takes a mask; "
                       f"{bound!r} does not: use negatives=None.")
  if preprocess not in PREPROCESS:
    raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}; "
                     f"got {preprocess!r}.")
  objective = _objective.make_objective(bound, bound_options)  # checks the name
  if not isinstance(critic, str):
    raise ValueError(f"critic must be a name such as 'separable'; got "
                     f"{critic!r}.")
  if critic_options is None:
    critic_options = DEFAULT_CRITIC_OPTIONS.get(critic, {})
  if weight_decay is None:
    weight_decay = DEFAULT_WEIGHT_DECAY.get(critic, 0.0)
  if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
    raise ValueError(f"weight_decay must be a number >= 0; got "
                     f"{weight_decay!r}.")
  candidates = (list(critic_options) if isinstance(critic_options,
                                                   (list, tuple))
                else [critic_options])
  if not candidates or not all(isinstance(o, dict) for o in candidates) or any(
      not isinstance(o.get("weight_decay", 0.0), (int, float))
      or o.get("weight_decay", 0.0) < 0 for o in candidates):
    raise ValueError(f"critic_options must be a dict of critic options or a "
                     f"non-empty list of such dicts; got {critic_options!r}.")

  rng = np.random.default_rng(seed)
  perm = rng.permutation(n)
  train_idx = perm[:n_train]
  valid_idx, test_idx = perm[n_train:n_train + n_valid], perm[n_train + n_valid:]
  x_NxDx = x_NxDx.astype(np.float64)
  y_NxDy = y_NxDy.astype(np.float64)
  if preprocess != "none":
    fn = _standardize if preprocess == "standardize" else _gaussianize
    x_NxDx = fn(x_NxDx, train_idx)
    y_NxDy = fn(y_NxDy, train_idx)
  if preprocess == "canonical":
    x_NxDx, y_NxDy = _canonical(x_NxDx, y_NxDy, train_idx)
  x_NxDx = x_NxDx.astype(np.float32)
  y_NxDy = y_NxDy.astype(np.float32)
  x_train = jnp.asarray(x_NxDx[train_idx])
  y_train = jnp.asarray(y_NxDy[train_idx])
  split = lambda idx: (jnp.asarray(x_NxDx[idx]), jnp.asarray(y_NxDy[idx]))
  valid_full, test_full = split(valid_idx), split(test_idx)
  dense_valid = n_valid <= DENSE_READOUT_MAX
  dense_test = n_test <= DENSE_READOUT_MAX
  # The SE's M random size-K subsets of the test rows and, for the
  # heldout_above_train flag, of as many training rows (own generator: the
  # training batches below do not depend on it). Dense read-outs take them
  # as sub-matrices of the split's score matrix.
  train_rng = np.random.default_rng([seed, 1])
  sel_MxK = jnp.asarray(np.stack(
      [rng.choice(n_test if dense_test else n_valid, batch_size, replace=False)
       for _ in range(eval_batches)]).astype(np.int32))
  if dense_test:
    train_full = split(train_rng.choice(train_idx, min(n_train, n_test),
                                        replace=False))
  else:
    test = _heldout_batches(rng, x_NxDx, y_NxDy, test_idx, batch_size,
                            eval_batches)
    train_batches = _heldout_batches(train_rng, x_NxDx, y_NxDy, train_idx,
                                     batch_size, eval_batches)
  if not dense_valid:
    valid = _heldout_batches(rng, x_NxDx, y_NxDy, valid_idx, batch_size,
                             eval_batches)
  # negatives=M: each batch is split into groups of M + 1 rows, every pair
  # within a group scored (batch_size rounded down to a multiple of M + 1).
  group = None if negatives is None else negatives + 1
  rows = batch_size if group is None else batch_size // group * group
  n_chunks = -(-steps // eval_every)
  chunk = -(-steps // n_chunks)
  seed32 = np.uint32(seed % 2**32)

  def train_group(members):
    """Trains the candidates `members` (indices) as one program; their
    `_Fit`s. They share the model's shapes (see `_structure`)."""
    opts = [dict(candidates[k]) for k in members]
    wds = [o.pop("weight_decay", weight_decay) for o in opts]
    gates = [float(bool(o.pop("square_features", False))) for o in opts]
    shared = {**opts[0], **({"square_features": True} if any(gates) else {})}
    # A candidate's "critic" key overrides the critic name (its own program).
    name = shared.pop("critic", critic)
    if name == "quadratic" and shared.get("rank") == "auto":
      shared["rank"] = _noise_edge_rank(x_NxDx[train_idx].astype(np.float64),
                                        y_NxDy[train_idx].astype(np.float64))
    config = (bound, _freeze(bound_options), name, _freeze(shared),
              dim_x, dim_y)
    try:
      hash(config)
      build = _compiled  # cached: repeated calls skip compilation
    except TypeError:  # unhashable options: build (and compile) afresh
      build = _compiled.__wrapped__
    c = build(*config)
    n_c = len(members)
    state = c.init(seed32, np.full(n_c, lr, np.float32),
                   np.asarray(wds, np.float32), np.asarray(gates, np.float32),
                   ensemble)
    full_valid = _can_read_full(c.objective, name, n_valid, shared)
    # Each candidate its own batch order (the first one's is that of a
    # single-candidate call), each member its own.
    batch_rngs = [rng if k == 0 else np.random.default_rng([seed, 2, k])
                  for k in members]

    def heldout_values(st):
      if dense_valid:
        return np.asarray(c.evaluate(st, *valid_full, sel_MxK, False)[0],
                          np.float64)
      if full_valid:
        return np.asarray(c.full_readout(st, *valid_full), np.float64)
      return np.asarray(c.readout(st, *valid), np.float64).mean(1)

    flags = [[] for _ in members]
    curves = [([], [], []) for _ in members]
    best = np.full(n_c, -np.inf)
    since_best = np.zeros(n_c, np.int64)
    done = np.zeros(n_c, np.int64)
    skipped = np.zeros(n_c, np.int64)
    active = np.ones(n_c, bool)
    stopped = np.zeros(n_c, bool)
    best_state = None
    for i in range(n_chunks):
      idx = np.stack([np.stack([batch_indices(r, n_train, chunk, rows)
                                for _ in range(ensemble)])
                      for r in batch_rngs])
      state, values, finite = c.train_chunk(state, x_train, y_train, idx,
                                            seed32, i, group)
      finite = np.asarray(finite).reshape(n_c, -1)
      values = np.asarray(values, np.float64).reshape(n_c, -1)
      heldout = heldout_values(state)
      take = np.zeros(n_c, bool)
      for j in np.flatnonzero(active):
        skipped[j] += int((~finite[j]).sum())
        value = heldout[j] if finite[j].any() else float("nan")
        if not np.isfinite(value):
          flags[j].append(FLAG_DIVERGED)
          active[j] = False
          continue
        done[j] += chunk
        for curve, v in zip(curves[j], (done[j], values[j][finite[j]].mean(),
                                        value)):
          curve.append(v)
        take[j] = value > best[j]
        if value > best[j] + min_delta:
          best[j], since_best[j] = value, 0
        else:
          best[j], since_best[j] = max(best[j], value), since_best[j] + 1
        if (patience is not None and since_best[j] >= patience
            and i < n_chunks - 1):
          stopped[j], active[j] = True, False
      # Keep each candidate's best state, on the host (a copy: the next
      # chunk donates `state`; a few thousand parameters per candidate).
      if best_state is None or take.any():
        now = jax.device_get(state)
        best_state = now if best_state is None else jax.tree.map(
            lambda b, s: np.where(
                take.reshape((-1,) + (1,) * (s.ndim - 1)), s, b),
            best_state, now)
      if not active.any():
        break
    resolved = {"rank": shared["rank"]} if "rank" in shared else {}
    return [_Fit(c, name, {**candidates[k], **resolved,
                           "weight_decay": wds[j]}, j,
                 best_state,
                 float(best[j]), flags[j], int(done[j]), int(skipped[j]),
                 bool(stopped[j]), np.asarray(curves[j][0], np.int64),
                 np.asarray(curves[j][1], np.float64),
                 np.asarray(curves[j][2], np.float64))
            for j, k in enumerate(members)]

  groups = {}
  for k, options in enumerate(candidates):
    groups.setdefault(_structure(options), []).append(k)
  fits = [None] * len(candidates)
  for members in groups.values():
    for k, fit in zip(members, train_group(members)):
      fits[k] = fit
  # The candidate with the best validation value (a diverged one never wins
  # over a finite one: its `best` is -inf or its last finite value).
  pick = max(range(len(fits)), key=lambda k: (
      FLAG_DIVERGED not in fits[k].flags, fits[k].best))
  f = fits[pick]
  c, objective, best_state, j = f.compiled, f.compiled.objective, \
      f.best_state, f.index
  flags, done, skipped, stopped_early = (list(f.flags), f.steps, f.skipped,
                                         f.stopped_early)
  curve_steps, curve_train, curve_valid = f.curve_steps, f.curve_train, \
      f.curve_valid
  critic_options = f.options

  if dense_test:  # all pairs, and the M batches as sub-matrices
    mi_C, test_CxM = c.evaluate(best_state, *test_full, sel_MxK, True)
    train_CxM = c.evaluate(best_state, *train_full, sel_MxK, True)[1]
    full_test = True
  else:
    test_CxM = c.readout(best_state, *test)
    train_CxM = c.readout(best_state, *train_batches)
    full_test = _can_read_full(objective, f.critic, n_test, critic_options)
    mi_C = c.full_readout(best_state, *test_full) if full_test else None
  test_M = np.asarray(test_CxM, np.float64)[j]
  train_M = np.asarray(train_CxM, np.float64)[j]
  mi = float(np.asarray(mi_C)[j]) if full_test else float(test_M.mean())
  if not np.isfinite(test_M).all():
    mi = float("nan")
  stderr = _stderr(test_M, batch_size, n_test, mean_of_batches=not full_test)
  for flag in _implausible(mi, stderr, test_M, float(train_M.mean())):
    if flag not in flags:
      flags.append(flag)
  if (not stopped_early and FLAG_DIVERGED not in flags
      and _still_rising(curve_steps, curve_valid, stderr)):
    flags.append(FLAG_STILL_RISING)
  k_read = n_test if full_test else batch_size
  if objective.log_k_ceiling and mi >= 0.9 * math.log(k_read):
    flags.append(FLAG_LOG_K_CEILING)
  if skipped:
    flags.append(FLAG_SKIPPED_STEPS)
  return EstimateResult(
      mi=mi, stderr=stderr, bound=objective.name, critic=str(critic),
      steps=done, stopped_early=stopped_early, curve_steps=curve_steps,
      curve_train=np.asarray(curve_train, np.float64),
      curve_heldout=curve_valid, wall_time=time.perf_counter() - t0,
      flags=tuple(flags), batch_size=batch_size, n_train=n_train,
      n_heldout=n_heldout, skipped_steps=skipped,
      heldout_batch_mean=float(test_M.mean()),
      train_batch_mean=float(train_M.mean()),
      critic_options=dict(critic_options),
      candidate_values=tuple(float(f.best) for f in fits))
