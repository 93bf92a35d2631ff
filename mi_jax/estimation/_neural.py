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

from mi_jax.estimation import _checks
from mi_jax.estimation import _objective

FLAG_STILL_RISING = "still_rising"
FLAG_DIVERGED = "diverged"
FLAG_LOG_K_CEILING = "log_k_ceiling"


@dataclasses.dataclass(frozen=True)
class EstimateResult:
  """What `estimate` returns.

  Attributes:
    mi: held-out point estimate, nats: the bound on the test split at the
      parameters chosen on the validation split.
    stderr: its standard error, nats (see `estimate`).
    bound: bound name.
    critic: critic name.
    steps: training steps run.
    stopped_early: True when early stopping ended training before `steps`.
    curve_steps: step count at each evaluation, `[E]`.
    curve_train: mean training-batch bound over each chunk, `[E]`.
    curve_heldout: validation (held-out) bound after each chunk, `[E]`.
    wall_time: seconds for the whole call (compilation included).
    flags: warnings, a subset of ("still_rising", "diverged", "log_k_ceiling").
    batch_size: training and held-out batch size K.
    n_train: training samples.
    n_heldout: held-out samples (validation + test halves).
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

  @property
  def still_rising(self) -> bool:
    return FLAG_STILL_RISING in self.flags

  @property
  def diverged(self) -> bool:
    return FLAG_DIVERGED in self.flags

  @property
  def hit_ceiling(self) -> bool:
    return FLAG_LOG_K_CEILING in self.flags

  def __float__(self) -> float:
    return float(self.mi)

  def __str__(self) -> str:
    text = f"{self.mi:.4f} ± {self.stderr:.4f} nats"
    for flag in self.flags:
      text += f"  [{_FLAG_ADVICE[flag](self)}]"
    return text


_FLAG_ADVICE = {
    FLAG_STILL_RISING: lambda r: (
        "still rising at the end of training: increase steps"),
    FLAG_DIVERGED: lambda r: (
        "diverged (non-finite values): the estimate is from the last finite "
        "parameters; lower lr or use a bounded objective (smile, infonce)"),
    FLAG_LOG_K_CEILING: lambda r: (
        f"at the InfoNCE ceiling log K = {math.log(r.batch_size):.3f}: the "
        "true MI may be higher; increase batch_size or use another bound"),
}


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


def make_train_step(graphdef, tx, objective, sample_fn):
  """Pure step `(carry, step_input) -> (carry, value)` for `lax.scan`.

  carry = (params, rest, opt_state, bound_state); `sample_fn(step_input) ->
  (x_BxDx, y_BxDy)` makes the batch. Adam ascends the bound (descends -value).
  """

  def loss_fn(params, rest, x_BxDx, y_BxDy, bound_state):
    critic = nnx.merge(graphdef, params, rest)
    scores_BxB = critic(x_BxDx, y_BxDy)
    value, new_state = objective.train(scores_BxB, bound_state)
    return -value, (value, new_state)

  def step(carry, step_input):
    params, rest, opt_state, bound_state = carry
    x_BxDx, y_BxDy = sample_fn(step_input)
    grads, (value, bound_state) = jax.grad(loss_fn, has_aux=True)(
        params, rest, x_BxDx, y_BxDy, bound_state)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, rest, opt_state, bound_state), value

  return step


def make_readout(graphdef, objective):
  """`(params, rest, x_MxBxDx, y_MxBxDy) -> values_M`: read-out per batch."""

  def readout(params, rest, x_MxBxDx, y_MxBxDy):
    critic = nnx.merge(graphdef, params, rest)
    return jax.lax.map(lambda xy: objective.readout(critic(*xy)),
                       (x_MxBxDx, y_MxBxDy))

  return readout


def _make_critic(name, dim_x, dim_y, seed, options):
  from mi_jax import critics  # pylint: disable=g-import-not-at-top
  if not isinstance(name, str):
    raise ValueError(f"critic must be a name; got {name!r}.")
  try:
    return critics.make(name, dim_x, dim_y, rngs=nnx.Rngs(seed), **options)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"could not build critic {name!r} with options "
                     f"{options}: {e}") from e


# Defaults of estimate() per critic: sized for 10-100k samples of 1-50 dims,
# fast on a CPU; an embedding width >= the data dimension lets a separable
# critic represent the Gaussian cross term x^T W y.
DEFAULT_CRITIC_OPTIONS = {
    "separable": {"hidden": (128,), "out_dim": 32},
    "concat": {"hidden": (128,)},
}


def _freeze(options):
  return tuple(sorted((options or {}).items()))


class Compiled(NamedTuple):
  """The pieces of one estimate() configuration (see `_compiled`)."""
  objective: Any
  graphdef: Any
  tx: Any
  init: Callable
  train_chunk: Callable
  readout: Callable


@functools.lru_cache(maxsize=16)
def _compiled(bound, bound_options, critic, critic_options, dim_x, dim_y):
  """`Compiled` functions for one configuration.

  Cached across calls, so repeated estimates with one configuration compile
  once (per data shape). `init(key, lr) -> carry` builds the critic under jit:
  eager initialisation would compile every initializer op separately.
  """
  objective = _objective.make_objective(bound, dict(bound_options))
  template = nnx.eval_shape(lambda: _make_critic(
      critic, dim_x, dim_y, 0, dict(critic_options)))
  graphdef, _, _ = nnx.split(template, nnx.Param, ...)
  # The learning rate lives in the optimizer state: no recompile per lr.
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

  def train_chunk(carry, x_train, y_train, idx_SxB):
    step = make_train_step(graphdef, tx, objective,
                           lambda idx: (x_train[idx], y_train[idx]))
    return jax.lax.scan(step, carry, idx_SxB)

  def init(key, lr):
    model = _make_critic(critic, dim_x, dim_y, key, dict(critic_options))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    return params, rest, opt_state, objective.init_state

  readout = make_readout(graphdef, objective)
  return Compiled(objective, graphdef, tx, jax.jit(init), jax.jit(train_chunk),
                  jax.jit(readout))


# ----------------------------------------------------------------------------
# estimate().


PREPROCESS = ("standardize", "gaussianize", "none")


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


def _stderr(values_M, batch_size, n_heldout):
  """SE of the held-out estimate from M random size-B subsets of n samples.

  A size-B batch estimate has variance ~ s^2 / B; across random subsets of a
  finite set of n, var_M ~ s^2 / B (1 - B/n); the estimate's sampling variance
  is ~ s^2 / n = var_M B / (n - B), plus var_M / M for using M subsets.
  """
  m = len(values_M)
  var = float(np.var(values_M, ddof=1)) if m > 1 else 0.0
  if n_heldout > batch_size:
    return math.sqrt(var * batch_size / (n_heldout - batch_size) + var / m)
  return math.sqrt(var)  # n == B: every subset is the whole set


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


def estimate(x, y, *, bound: str = "smile", critic: str = "separable",
             batch_size: int = 256, steps: int = 5000, lr: float = 5e-4,
             seed: int = 0, holdout: float = 0.2, eval_every: int = 250,
             patience: int | None = 8, min_delta: float = 0.01,
             eval_batches: int = 32, preprocess: str = "standardize",
             bound_options: dict | None = None,
             critic_options: dict | None = None) -> EstimateResult:
  """Neural variational estimate of I(X; Y) in nats, read out on held-out data.

  The samples are split at random into train (1 - holdout) and held-out
  parts, and the held-out part into two halves, validation and test. A critic
  T(x, y) is trained with Adam to maximise `bound` on random training batches
  of size K = batch_size (no repeats within a batch). Every `eval_every` steps
  the bound is evaluated on `eval_batches` random size-K validation batches
  (K matters: InfoNCE <= log K). Training stops at `steps`, or early when the
  validation value has not improved by `min_delta` for `patience`
  evaluations (None: never). The estimate is the bound on the test half at
  the parameters with the best validation value: the test half is read once,
  so the estimate is not the maximum of noisy values seen during training.

  Standard error: SE^2 = var_M K / (n_t - K) + var_M / M, where var_M is the
  variance of the M test batch values and n_t the test size (the subsampling
  approximation; it ignores the critic's own training noise).

  Bounds: InfoNCE (van den Oord et al. 2018), NWJ/TUBA (Nguyen et al. 2010;
  Poole et al. 2019), DV / MINE (Belghazi et al. 2018), JS trained, NWJ read
  out (Hjelm et al. 2019; Poole et al. 2019), interpolated (Poole et al.
  2019), SMILE (Song & Ermon 2020). See mi_jax.bounds.

  Args:
    x: samples `[N, Dx]` (2-D; reshape a scalar variable with x.reshape(-1, 1)).
    y: samples `[N, Dy]`, paired row by row with x.
    bound: a name in mi_jax.bounds.NAMES, or a callable `fn(scores) -> value`.
    critic: a name for mi_jax.critics.make ("separable", "concat", "bilinear",
      "inner_product"); "concat" scores all K^2 pairs with one MLP (slower).
    batch_size: K, training and held-out batch size.
    steps: maximum training steps (rounded up to whole chunks).
    lr: Adam learning rate.
    seed: seed of the split, the critic's initialisation and the batches.
    holdout: fraction of samples held out (half validation, half test).
    eval_every: steps per compiled chunk between validation evaluations.
    patience: evaluations without improvement before stopping; None disables.
    min_delta: improvement in nats that resets the patience counter.
    eval_batches: M, random batches per validation / test evaluation.
    preprocess: per-column map fitted on the training split (MI is invariant
      to invertible per-coordinate maps): "standardize" (z-score, default),
      "gaussianize" (training ECDF then the normal quantile: use it for
      heavy-tailed data, where NWJ / DV / MINE read-outs otherwise explode),
      or "none".
    bound_options: keyword options of the bound, e.g. {"clip": 5.0} (SMILE).
    critic_options: keyword options of the critic (see mi_jax.critics);
      None: DEFAULT_CRITIC_OPTIONS (separable: hidden (128,), out_dim 32).

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
                  ("eval_every", eval_every), ("eval_batches", eval_batches)):
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
  if preprocess not in PREPROCESS:
    raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}; "
                     f"got {preprocess!r}.")
  objective = _objective.make_objective(bound, bound_options)  # checks the name
  if not isinstance(critic, str):
    raise ValueError(f"critic must be a name such as 'separable'; got "
                     f"{critic!r}.")
  if critic_options is None:
    critic_options = DEFAULT_CRITIC_OPTIONS.get(critic, {})

  rng = np.random.default_rng(seed)
  perm = rng.permutation(n)
  train_idx = perm[:n_train]
  valid_idx, test_idx = perm[n_train:n_train + n_valid], perm[n_train + n_valid:]
  x_NxDx = x_NxDx.astype(np.float32)
  y_NxDy = y_NxDy.astype(np.float32)
  if preprocess != "none":
    fn = _standardize if preprocess == "standardize" else _gaussianize
    x_NxDx = fn(x_NxDx, train_idx).astype(np.float32)
    y_NxDy = fn(y_NxDy, train_idx).astype(np.float32)
  x_train = jnp.asarray(x_NxDx[train_idx])
  y_train = jnp.asarray(y_NxDy[train_idx])
  valid = _heldout_batches(rng, x_NxDx, y_NxDy, valid_idx, batch_size,
                           eval_batches)
  test = _heldout_batches(rng, x_NxDx, y_NxDy, test_idx, batch_size,
                          eval_batches)

  n_chunks = -(-steps // eval_every)
  chunk = -(-steps // n_chunks)
  config = (bound, _freeze(bound_options), critic, _freeze(critic_options),
            dim_x, dim_y)
  try:
    hash(config)
    build = _compiled  # cached: repeated calls skip compilation
  except TypeError:  # unhashable options: build (and compile) afresh
    build = _compiled.__wrapped__
  objective, _, _, init, train_chunk, readout = build(*config)
  carry = init(jax.random.key(seed), lr)

  flags = []
  curve_steps, curve_train, curve_valid = [], [], []
  best_carry, best, since_best = carry, -np.inf, 0
  stopped_early = False
  done = 0
  for c in range(n_chunks):
    idx_SxB = batch_indices(rng, n_train, chunk, batch_size)
    new_carry, train_values = train_chunk(carry, x_train, y_train, idx_SxB)
    valid_M = np.asarray(readout(new_carry[0], new_carry[1], *valid))
    train_values = np.asarray(train_values)
    if not (np.isfinite(train_values).all() and np.isfinite(valid_M).all()):
      flags.append(FLAG_DIVERGED)
      break
    carry = new_carry
    done += chunk
    value = float(valid_M.mean())
    curve_steps.append(done)
    curve_train.append(float(train_values.mean()))
    curve_valid.append(value)
    if value > best:
      best_carry = carry
    if value > best + min_delta:
      best, since_best = value, 0
    else:
      best, since_best = max(best, value), since_best + 1
    if patience is not None and since_best >= patience and c < n_chunks - 1:
      stopped_early = True
      break

  test_M = np.asarray(readout(best_carry[0], best_carry[1], *test))
  mi = float(test_M.mean()) if np.isfinite(test_M).all() else float("nan")
  stderr = _stderr(test_M, batch_size, n_test)
  curve_steps = np.asarray(curve_steps, np.int64)
  curve_valid = np.asarray(curve_valid, np.float64)
  if (not stopped_early and FLAG_DIVERGED not in flags
      and _still_rising(curve_steps, curve_valid, stderr)):
    flags.append(FLAG_STILL_RISING)
  if objective.log_k_ceiling and mi >= 0.9 * math.log(batch_size):
    flags.append(FLAG_LOG_K_CEILING)
  return EstimateResult(
      mi=mi, stderr=stderr, bound=objective.name, critic=str(critic),
      steps=done, stopped_early=stopped_early, curve_steps=curve_steps,
      curve_train=np.asarray(curve_train, np.float64),
      curve_heldout=curve_valid, wall_time=time.perf_counter() - t0,
      flags=tuple(flags), batch_size=batch_size, n_train=n_train,
      n_heldout=n_heldout)
