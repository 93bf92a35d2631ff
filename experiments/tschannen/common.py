"""Shared pieces of the Tschannen et al. (ICLR 2020) reproductions.

"On Mutual Information Maximization for Representation Learning" (Tschannen,
Djolonga, Rubenstein, Gelly, Lucic). This module holds what every experiment
script in this folder uses: command-line settings (full paper setting and
`--quick`), MNIST loading, the seed-vmapped multiview training program with
periodic evaluation (held-out bound on the test split, linear probe on g1),
failure bookkeeping, tables, CSVs and plots.

Not run by itself; each experiment script is, e.g.

  .venv/bin/python experiments/tschannen/critics.py --quick
"""

import argparse
import csv
import dataclasses
import math
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import nnx

from mi_jax import critics
from mi_jax import data as data_lib
from mi_jax import evaluation
from mi_jax import objectives
from mi_jax import training
from mi_jax import views as views_lib
from mi_jax.evaluation import protocols
from mi_jax.objectives import multiview

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
FIGURES_DIR = os.path.join(
    os.path.dirname(__file__), "..", "..", "docs", "figures")
NOISE_STD_BASELINE = 0.05  # N(0, 0.05^2) on the raw-pixel baseline's inputs.


@dataclasses.dataclass(frozen=True)
class Settings:
  """One experiment's run settings (paper defaults; `--quick` shrinks them)."""
  steps: int = 20_000
  seeds: int = 20
  eval_every: int = 1_000
  batch_size: int = 128
  lr: float = 1e-4
  dataset: str = "mnist5k"
  data_dir: Optional[str] = None
  out_dir: str = RESULTS_DIR
  fig_dir: str = FIGURES_DIR
  quick: bool = False
  variant: str = "notebook"
  # The exact L-BFGS probe (`accuracy`) at steps that are multiples of this,
  # plus step 0 and the final step; None: at every evaluation. The saga probe
  # (`accuracy_saga`) runs at every evaluation regardless.
  exact_probe_every: Optional[int] = None

  def exact_probe_at(self, step: int) -> bool:
    """Whether the exact probe runs at evaluation step `step`."""
    k = self.exact_probe_every
    return (k is None or step == 0 or step >= self.steps
            or step % max(k, 1) == 0)

  @property
  def notebook(self) -> bool:
    """True for the notebook-exact setting (see `VARIANTS`)."""
    return self.variant == "notebook"


# The two settings of every reproduction (docs/reproductions.md):
#   notebook: as the paper's public notebook did it: the same noise draw added
#     to both views (§3.1c), affine couplings with scale softplus(.) + 1e-7
#     (§3.1b), bilinear critics initialised as Keras' Glorot-uniform;
#   fixed: our fixes as ablations: independent noise per view, tanh-bounded
#     log-scale, bilinear kernel ~ N(0, 1 / (Da Db)).
# Both report the held-out (test-split) and training-split bound, and both
# linear probes (exact L-BFGS `accuracy`, the notebook's saga `accuracy_saga`).
VARIANTS = ("notebook", "fixed")


def add_args(parser: argparse.ArgumentParser, *, quick_steps: int,
             quick_seeds: int = 2, quick_eval_every: Optional[int] = None):
  """Adds the common flags; `--quick` means the given reduced setting."""
  parser.add_argument("--quick", action="store_true",
                      help=f"{quick_steps} steps, {quick_seeds} seeds.")
  parser.add_argument("--full", action="store_true",
                      help="the paper's setting (the default without --quick "
                      "or --steps/--seeds/--eval_every): for an accelerator.")
  parser.add_argument("--variant", choices=VARIANTS, default="notebook",
                      help="notebook: set up as the paper's notebook (shared "
                      "noise, softplus affine scale, Glorot bilinear); fixed: "
                      "our fixes.")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--seeds", type=int, default=None)
  parser.add_argument("--eval_every", type=int, default=None)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--dataset", default="mnist5k",
                      help="mnist5k (embedded, offline) or an MNIST-shaped "
                      "TFDS name such as mnist.")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--exact_probe_every", type=int, default=None,
                      help="run the exact L-BFGS probe (~17 CPU s per seed "
                      "on full MNIST) only at multiples of this step, step 0 "
                      "and the last step (default: every evaluation); the "
                      "saga probe runs at every evaluation.")
  parser.add_argument("--out_dir", default=RESULTS_DIR)
  parser.add_argument("--fig_dir", default=FIGURES_DIR)
  parser.set_defaults(_quick=(quick_steps, quick_seeds,
                              quick_eval_every or max(1, quick_steps // 4)))


def settings_from_args(args, **overrides) -> Settings:
  """Settings from parsed flags: explicit flags > `--quick` > paper values."""
  q_steps, q_seeds, q_every = args._quick  # pylint: disable=protected-access
  base = Settings()
  if args.full and (args.quick or args.steps or args.seeds or args.eval_every):
    raise ValueError("--full is the paper's setting; drop --quick / --steps / "
                     "--seeds / --eval_every, or drop --full.")
  steps = args.steps or (q_steps if args.quick else base.steps)
  seeds = args.seeds or (q_seeds if args.quick else base.seeds)
  every = args.eval_every or (q_every if args.quick else base.eval_every)
  return dataclasses.replace(
      base, steps=steps, seeds=seeds, eval_every=min(every, steps),
      batch_size=args.batch_size, dataset=args.dataset,
      data_dir=args.data_dir, out_dir=args.out_dir, fig_dir=args.fig_dir,
      quick=args.quick, variant=args.variant,
      exact_probe_every=getattr(args, "exact_probe_every", None), **overrides)


def start(parser: argparse.ArgumentParser, argv=None):
  """Parses the flags and loads the data: (args, settings, data, pixel baseline)."""
  args = parser.parse_args(argv)
  settings = settings_from_args(args)
  data = load_mnist(settings)
  return args, settings, data, pixel_baseline(data,
                                               cache_dir=settings.out_dir)


# The panels of the experiments that compare I_NWJ with I_NCE.
BOUND_PANELS = [("accuracy", "accuracy with I_NWJ", "I_NWJ"),
                ("accuracy", "accuracy with I_NCE", "I_NCE"),
                ("mi_test", "I_NWJ (test split)", "I_NWJ"),
                ("mi_test", "I_NCE (test split)", "I_NCE")]


# ----------------------------------------------------------------------------
# Data.


def load_mnist(settings: Settings) -> dict:
  """{"train", "test"}: "image" f32 [N, 28, 28, 1] in [0, 1], "label" i32."""
  out = {}
  for split in ("train", "test"):
    arrays = data_lib.load_arrays(settings.dataset, split,
                                  data_dir=settings.data_dir)
    if arrays["image"].shape[1:] != (28, 28, 1):
      raise ValueError(f"--dataset {settings.dataset}: the experiments need "
                       "MNIST-shaped images [N, 28, 28, 1], got "
                       f"{arrays['image'].shape}")
    out[split] = arrays
  return out


def top_half_flat(images_Nx28x28x1: np.ndarray) -> np.ndarray:
  """The paper's view 1: the first 392 of the 784 row-major pixels."""
  top, _ = views_lib.top_bottom_halves_flat(jnp.asarray(images_Nx28x28x1))
  return np.asarray(top)


def pixel_baseline(data: dict, seed: int = 0,
                   cache_dir: Optional[str] = None) -> float:
  """Linear-probe accuracy on the top-half pixels + N(0, 0.05^2) noise.

  With `cache_dir`, the value is kept in `pixel_baseline_cache.json` there,
  keyed by the data's sizes, a checksum of its labels and `seed` (the fit
  costs about a CPU minute on full MNIST and is the same for every run).
  """
  import json  # pylint: disable=g-import-not-at-top
  tr, te = data["train"], data["test"]
  key = (f"{len(tr['label'])}/{len(te['label'])}/"
         f"{int(np.asarray(tr['label'], np.int64).sum())}/"
         f"{float(np.asarray(te['image'], np.float64).sum()):.6g}/{seed}")
  path = cache_dir and os.path.join(cache_dir, "pixel_baseline_cache.json")
  cache = {}
  if path and os.path.exists(path):
    with open(path) as f:
      cache = json.load(f)
  if key not in cache:
    cache[key] = float(evaluation.pixel_baseline_accuracy(
        tr["image"], tr["label"], te["image"], te["label"],
        noise_std=NOISE_STD_BASELINE, seed=seed))
    if path:
      os.makedirs(cache_dir, exist_ok=True)
      with open(path, "w") as f:
        json.dump(cache, f, indent=1)
  return cache[key]


def bilinear_critic(dim: int, settings: Settings):
  """`make(rngs)` of a dim x dim bilinear critic, initialised per variant."""
  init = "glorot_uniform" if settings.notebook else "normal"

  def make(rngs):
    return critics.make("bilinear", dim, dim, init=init, rngs=rngs)
  return make


def noisy_views(views: Callable, noise_std: float, *, shared: bool):
  """`views(images, key)` plus N(0, noise_std^2) noise on each view.

  shared=True adds one noise draw to both views, v1 + n and v2 + n (the
  paper's notebook; the views must have the same shape); shared=False draws
  independent noise per view (our fix: shared noise is a signal common to
  both views that a bound can pick up). noise_std = 0 returns `views`.
  """
  if noise_std <= 0:
    return views

  def fn(images, key):
    k_views, k1, k2 = jax.random.split(key, 3)
    v1, v2 = views(images, k_views)
    if shared:
      if v1.shape != v2.shape:
        raise ValueError("shared noise needs views of the same shape, got "
                         f"{v1.shape} and {v2.shape}; use shared=False.")
      n = jax.random.normal(k1, v1.shape, jnp.float32)
      return v1 + noise_std * n, v2 + noise_std * n
    return (views_lib.add_noise(v1, k1, noise_std),
            views_lib.add_noise(v2, k2, noise_std))
  return fn


# ----------------------------------------------------------------------------
# Linear probes: the exact fit and the notebook's solver.


def saga_probe(train_feats_NxD, train_labels_N, test_feats_MxD, test_labels_M,
               *, C=10.0, tol=0.1, seed=0, return_model=False):
  """The notebook's probe: scikit-learn saga logistic regression, tol 0.1.

  Minimises C * sum_i CE(softmax(W^T x_i + b), y_i) + ||W||^2 / 2
  (multinomial; the objective of `mi_jax.evaluation.linear_probe`) on
  features min-max scaled with the train split's statistics, but stops at
  saga's loose tolerance 0.1 (max change of the coefficients relative to
  their size), so its accuracy depends on the features' conditioning.
  `seed` fixes saga's sampling order (the notebook left it unseeded).
  Returns the test accuracy (and the fitted model with `return_model`).
  """
  # pylint: disable=g-import-not-at-top
  import warnings
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import MinMaxScaler
  scaler = MinMaxScaler().fit(train_feats_NxD)
  clf = LogisticRegression(C=C, solver="saga", tol=tol, random_state=seed)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(scaler.transform(train_feats_NxD), train_labels_N)
  acc = float(clf.score(scaler.transform(test_feats_MxD), test_labels_M))
  return (acc, clf, scaler) if return_model else acc


# ----------------------------------------------------------------------------
# The seed-vmapped training program.


def seed_keys(seed_ids) -> jax.Array:
  """One PRNG key per seed id; seed `s` always gets the same key."""
  return jax.vmap(jax.random.key)(jnp.asarray(seed_ids, jnp.uint32))


def sample_batch(images_NxHxWxC, labels_N, key, batch_size):
  """A batch drawn uniformly with replacement (one key per seed and step)."""
  idx_B = jax.random.randint(key, (batch_size,), 0, images_NxHxWxC.shape[0])
  return {"image": images_NxHxWxC[idx_B], "label": labels_N[idx_B]}


def make_chunk_fn(step_fn: Callable, num_steps: int, batch_size: int,
                  scan: bool = True):
  """`chunk(states_S, keys_S, images, labels)`: `num_steps` vmapped steps.

  Each seed's step t draws its batch (`sample_batch`, with replacement) from
  step t's key, `jax.random.split(key_s, num_steps)[t]`
  (`training.with_batch_sampler`). With `scan`, the steps run under one
  jitted `lax.scan` (`training.make_multi_step`, vmapped over seeds); without,
  a Python loop calls the jitted vmapped step with the same keys (the same
  computation: on CPU, XLA runs convolutions inside a loop body several
  times slower, so the ConvNet runs use `scan=False`).
  Returns (states_S, metrics with leaves [num_steps, S]).
  """
  step = training.with_batch_sampler(
      step_fn, lambda data, key: sample_batch(*data, key, batch_size))
  if scan:
    multi = training.vmap_over_seeds(
        training.make_multi_step(step, num_steps, batch_axis=None),
        batch_axis=None, key_axis=0)
    multi = jax.jit(multi, donate_argnums=0)

    def chunk(states_S, keys_S, images, labels):
      states_S, metrics = multi(states_S, (images, labels), keys_S)
      return states_S, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), metrics)
    return chunk

  one = jax.jit(training.vmap_over_seeds(step, batch_axis=None, key_axis=0),
                donate_argnums=0)

  def chunk_loop(states_S, keys_S, images, labels):
    keys_SxT = jax.vmap(lambda k: jax.random.split(k, num_steps))(keys_S)
    outs = []
    for t in range(num_steps):
      states_S, m = one(states_S, (images, labels), keys_SxT[:, t])
      outs.append(m)
    return states_S, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return chunk_loop


def probe_all(feats_train_S, y_train, feats_test_S, y_test,
              timing: Optional[dict] = None,
              exact: bool = True) -> dict[str, np.ndarray]:
  """Both linear probes per seed: {"accuracy": exact L-BFGS fit (the "probe"
  protocol's quick part), "accuracy_saga": the notebook's saga solver}, each
  [S]; NaN (a failure) for non-finite features. With `exact=False` only
  "accuracy_saga" (the key "accuracy" is absent). With `timing`, appends the
  CPU seconds of each solver to timing["probe_exact"] / ["probe_saga"]."""
  probe = protocols.get("probe")
  labels = {"train": y_train, "test": y_test}
  solvers = ("accuracy", "accuracy_saga") if exact else ("accuracy_saga",)
  out = {k: [] for k in solvers}
  for ftr, fte in zip(np.asarray(feats_train_S), np.asarray(feats_test_S)):
    if not (np.isfinite(ftr).all() and np.isfinite(fte).all()):
      for k in solvers:
        out[k].append(np.nan)
      continue
    # Cached by solver (e.g. step 0 of configs sharing g1's init).
    cached = _PROBE_CACHE.setdefault(_digest(ftr, y_train, fte, y_test), {})
    for k in solvers:
      if k not in cached:
        tc = time.process_time()
        if k == "accuracy":
          cached[k] = probe({"train": ftr, "test": fte}, labels, options={},
                            seed=0, full=False)["linear_acc"]
        else:
          cached[k] = saga_probe(ftr, y_train, fte, y_test)
        if timing is not None:
          timing.setdefault("probe_exact" if k == "accuracy" else
                            "probe_saga", []).append(time.process_time() - tc)
      out[k].append(cached[k])
  return {k: np.asarray(v) for k, v in out.items()}


# Probe results by a digest of (features, labels): both probes are
# deterministic functions of them, so identical features (step 0 of configs
# whose g1 starts from the same seed) are probed once per process.
_PROBE_CACHE: dict[str, dict] = {}


def _digest(*arrays) -> str:
  import hashlib  # pylint: disable=g-import-not-at-top
  h = hashlib.sha1()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(str((a.shape, a.dtype)).encode())
    h.update(a.tobytes())
  return h.hexdigest()


def features_S(features_fn, states_S, x_N, key=None,
               block: int = 1000) -> np.ndarray:
  """`features_fn(states_S, x_CxD[, key_c]) -> [S, C, D]` over blocks: [S, N, D].

  `x_N` is cut into blocks of `block` rows; with a `key`, block c gets
  `fold_in(key, c)`, so every block draws its own noise (one key for all
  blocks would repeat the same noise pattern in each).
  """
  outs = []
  for c, i in enumerate(range(0, len(x_N), block)):
    args = () if key is None else (jax.random.fold_in(key, c),)
    outs.append(np.asarray(jax.device_get(
        features_fn(states_S, x_N[i:i + block], *args))))
  return np.concatenate(outs, axis=1)


@dataclasses.dataclass
class Program:
  """What `run_program` needs to train and evaluate one configuration.

  Attributes:
    model_fn: `model_fn(key) -> nnx.Module` (one seed's model).
    loss_fn: `loss_fn(model, batch, key) -> (loss, metrics)`; metrics["mi"]
      is the bound value.
    tx: the optax optimizer.
    features_fn: `features_fn(model, images_Nx28x28x1, key) -> feats_NxD`,
      the representation probed (g1 of the top half).
    extra_eval_fn: optional `fn(model, key) -> dict of scalars`, evaluated
      per seed at every evaluation (e.g. Jacobian condition numbers).
  """
  model_fn: Callable
  loss_fn: Callable
  tx: optax.GradientTransformation
  features_fn: Callable
  extra_eval_fn: Optional[Callable] = None
  scan: bool = True


def multiview_program(make_g1: Callable, make_g2: Callable,
                      make_critic: Callable, bound: str, settings: Settings,
                      *, flatten: bool = True, noise_std: float = 0.0,
                      target: Optional[float] = None) -> Program:
  """A `Program` for the paper's top/bottom-half multiview setup.

  `make_g1(rngs)`, `make_g2(rngs)`, `make_critic(rngs)` build the pieces of
  a `multiview.MultiviewModel`; the loss is `multiview.make_multiview_loss`
  (-bound, or |bound - target|) on `noisy_views`: N(0, noise_std^2) noise,
  one draw shared by both views in the notebook variant, independent draws
  in the fixed one; the probed features are g1 of the top half (with its own
  noise draw when noise_std > 0, as the paper's evaluation graph does).
  """
  views = views_lib.make_views("top_bottom", flatten=flatten)
  train_views = noisy_views(views, noise_std, shared=settings.notebook)

  def model_fn(key):
    rngs = nnx.Rngs(key)
    return multiview.MultiviewModel(make_g1(rngs), make_g2(rngs),
                                    make_critic(rngs))

  def features_fn(model, images, key):
    v1, _ = views(images, key)
    if noise_std > 0:
      v1 = views_lib.add_noise(v1, key, noise_std)
    return model.encode1(v1)

  loss_fn = multiview.make_multiview_loss(
      views=train_views, bound=bound, target=target)
  return Program(model_fn=model_fn, loss_fn=loss_fn,
                 tx=optax.adam(settings.lr), features_fn=features_fn)


def run_program(name: str, program: Program, data: dict, settings: Settings,
                *, seed_ids=None, verbose: bool = True,
                return_states: bool = False):
  """Trains `len(seed_ids)` seeds as one vmapped program, evaluating as it goes.

  Every `settings.eval_every` steps (and at step 0) each seed gets: the bound
  on held-out test batches (`mi_test`); the bound on as many training-split
  batches (the first rows of the train split, `mi_trainsplit`: what the
  paper's "test" curves measured); the mean training-batch bound of the
  steps since the last evaluation (`mi_train`); both linear-probe accuracies
  of g1's features, train split -> test split (`accuracy`: exact L-BFGS fit;
  `accuracy_saga`: the notebook's saga, tol 0.1); and the count of
  non-finite steps so far (`nonfinite_steps`; such steps leave the state
  unchanged).
  Returns one row dict per (seed, evaluation step); with `return_states`,
  also the final stacked `TrainState` (leading axis = seeds).
  """
  seed_ids = list(range(settings.seeds)) if seed_ids is None else list(seed_ids)
  keys_S = seed_keys(seed_ids)
  init_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys_S)
  train_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys_S)
  eval_key = jax.random.key(12345)

  graphdef, states_S = training.init_train_states(
      program.model_fn, program.tx, init_keys_S)
  step_fn = training.make_train_step(graphdef, program.tx, program.loss_fn)
  chunk_fn = make_chunk_fn(step_fn, settings.eval_every, settings.batch_size,
                           program.scan)

  def merged(state):
    return training.merge_model(graphdef, state.params, state.rest)

  @jax.jit
  def eval_bound(states_S, batch, key):
    def one(state):
      model = merged(state)
      model.eval()
      _, metrics = program.loss_fn(model, batch, key)
      return metrics["mi"]
    return jax.vmap(one)(states_S)

  @jax.jit
  def features(states_S, images, key):
    def one(state):
      model = merged(state)
      model.eval()
      return program.features_fn(model, images, key)
    return jax.vmap(one)(states_S)

  extra = None
  if program.extra_eval_fn is not None:
    @jax.jit
    def extra(states_S, key):
      def one(state):
        model = merged(state)
        model.eval()
        return program.extra_eval_fn(model, key)
      return jax.vmap(one)(states_S)

  tr, te = data["train"], data["test"]
  tr_img, tr_lab = jnp.asarray(tr["image"]), jnp.asarray(tr["label"])
  te_img = jnp.asarray(te["image"])
  heldout = objectives.split_batches(te, settings.batch_size)
  n_te = len(te["label"])
  train_batches = objectives.split_batches(
      {k: v[:n_te] for k, v in tr.items()}, settings.batch_size)
  s = len(seed_ids)
  rows, nonfinite_S, mi_train_S = [], np.zeros(s, int), np.full(s, np.nan)
  t0, n_chunks = time.time(), settings.steps // settings.eval_every
  timing = {"name": name, "seeds": s, "chunk_steps": settings.eval_every,
            "train": [], "eval": [], "features": [], "bound": []}
  for c in range(n_chunks + 1):
    step = c * settings.eval_every
    if c > 0:
      chunk_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, c))(train_keys_S)
      tw, tc = time.time(), time.process_time()
      states_S, metrics = chunk_fn(states_S, chunk_keys_S, tr_img, tr_lab)
      jax.block_until_ready(metrics)
      timing["train"].append((time.time() - tw, time.process_time() - tc))
      nonfinite_S += np.asarray(~metrics["finite"]).sum(axis=0)
      mi = np.asarray(metrics["mi"])
      mi_train_S = np.where(np.isfinite(mi).all(0), mi.mean(0), np.nan)
    tw, tc = time.time(), time.process_time()
    fkey = jax.random.fold_in(eval_key, step)
    tf_ = time.process_time()
    ftr = features_S(features, states_S, tr_img, jax.random.fold_in(fkey, 0))
    fte = features_S(features, states_S, te_img, jax.random.fold_in(fkey, 1))
    timing["features"].append(time.process_time() - tf_)
    accs = probe_all(ftr, tr["label"], fte, te["label"], timing,
                     exact=settings.exact_probe_at(step))
    acc_S = accs.get("accuracy", np.full(s, np.nan))
    tb = time.process_time()
    mi_test_S = training.heldout_mean(eval_bound, states_S, heldout, eval_key)
    mi_trs_S = training.heldout_mean(eval_bound, states_S, train_batches,
                                     jax.random.fold_in(eval_key, 1))
    timing["bound"].append(time.process_time() - tb)
    extra_vals = {} if extra is None else {
        k: np.asarray(v) for k, v in extra(states_S, fkey).items()}
    for i, seed in enumerate(seed_ids):
      row = {"experiment": name, "seed": seed, "step": step,
             "mi_test": float(mi_test_S[i]),
             "mi_trainsplit": float(mi_trs_S[i]),
             "mi_train": float(mi_train_S[i]),
             "accuracy_saga": float(accs["accuracy_saga"][i]),
             "nonfinite_steps": int(nonfinite_S[i])}
      if "accuracy" in accs:  # absent where the exact probe was skipped
        row["accuracy"] = float(acc_S[i])
      for k, v in extra_vals.items():
        row[k] = v[i].tolist() if np.ndim(v[i]) else float(v[i])
      rows.append(row)
    timing["eval"].append((time.time() - tw, time.process_time() - tc))
    if verbose:
      acc = (f"{np.nanmean(acc_S):.4f}" if "accuracy" in accs else "-")
      print(f"  [{name}] step {step:6d}  acc {acc} "
            f"(saga {np.nanmean(accs['accuracy_saga']):.4f})  "
            f"I_test {np.nanmean(mi_test_S):+.3f}  "
            f"I_trainsplit {np.nanmean(mi_trs_S):+.3f}  "
            f"nonfinite {int(nonfinite_S.sum())}  ({time.time() - t0:.0f}s)",
            flush=True)
  TIMINGS.append(timing)
  return (rows, states_S) if return_states else rows


# Timings of every `run_program` call in this process (for extrapolation).
TIMINGS: list[dict] = []


def _steady(times):
  """Median (wall, cpu) of the calls after the first (which compiles)."""
  if not times:
    return 0.0, 0.0
  t = np.asarray(times[1:] if len(times) > 1 else times, np.float64)
  return float(np.median(t[:, 0])), float(np.median(t[:, 1]))


def timing_lines(timings: list[dict], full: Settings = Settings()) -> str:
  """Per-step / per-evaluation times and the full setting extrapolated.

  Extrapolation: train = (CPU s per step per seed) x full steps x full seeds,
  eval = (CPU s per evaluation per seed) x (full steps / eval_every + 1) x
  full seeds; CPU seconds, since the machine is shared (wall >= CPU / cores).
  With a single training chunk its time includes compilation (an overestimate).
  """
  lines = ["| config | s/step (wall, all seeds) | CPU s/step/seed | "
           "CPU s/eval/seed | of which: probe exact / probe saga / features "
           "/ bounds (CPU s per seed) | full setting, CPU h (extrapolated) |",
           "|---|---|---|---|---|---|"]
  total = 0.0
  for t in timings:
    tr_w, tr_c = _steady(t["train"])
    ev_w, ev_c = _steady(t["eval"])
    per_step = tr_c / t["chunk_steps"] / t["seeds"]
    per_eval = ev_c / t["seeds"]
    full_s = (per_step * full.steps + per_eval * (
        full.steps // full.eval_every + 1)) * full.seeds
    total += full_s
    parts = []
    for k in ("probe_exact", "probe_saga", "features", "bound"):
      v = t.get(k) or []
      per = np.median(v[1:] if len(v) > 1 else v) if v else math.nan
      if k in ("features", "bound"):
        per = per / t["seeds"]
      parts.append(f"{per:.2f}")
    lines.append(f"| {t['name']} | {tr_w / t['chunk_steps']:.3f} | "
                 f"{per_step:.4f} | {per_eval:.2f} | {' / '.join(parts)} | "
                 f"{full_s / 3600:.1f} |")
  lines.append(f"| **total** | | | | | **{total / 3600:.1f}** |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# Reporting.


def mean_std(values) -> tuple[float, float, int]:
  """(mean, std, n_finite) over the finite values."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std()), int(v.size)


def failed_seeds(rows: list[dict]) -> list[int]:
  """Seeds with a non-finite step, bound or accuracy (reported, not dropped)."""
  bad = set()
  for r in rows:
    vals = [r.get(k) for k in ("mi_test", "accuracy") if k in r]
    if r.get("nonfinite_steps", 0) > 0 or not all(
        np.isfinite(v) for v in vals if v is not None and r["step"] > 0):
      bad.add(r["seed"])
  return sorted(bad)


def final_rows(rows: list[dict]) -> list[dict]:
  last = max(r["step"] for r in rows)
  return [r for r in rows if r["step"] == last]


def summary_table(results: dict[str, list[dict]], metrics: list[str],
                  *, baseline: Optional[float] = None,
                  title: str = "") -> str:
  """Markdown table: config x (metric at the first and final step, failures)."""
  head = ["config", "seeds"]
  for m in metrics:
    head += [f"{m} @0", f"{m} @end"]
  head += ["failed seeds"]
  lines = [f"### {title}" if title else "", "",
           "| " + " | ".join(head) + " |",
           "|" + "---|" * len(head)]
  for cfg, rows in results.items():
    first = min(r["step"] for r in rows)
    last = max(r["step"] for r in rows)
    cells = [cfg, str(len({r["seed"] for r in rows}))]
    for m in metrics:
      for st in (first, last):
        mu, sd, n = mean_std([r[m] for r in rows if r["step"] == st])
        cells.append(f"{mu:.3f} ± {sd:.3f}" + ("" if n == len(
            {r['seed'] for r in rows}) else f" (n={n})"))
    bad = failed_seeds(rows)
    cells.append(", ".join(map(str, bad)) if bad else "none")
    lines.append("| " + " | ".join(cells) + " |")
  if baseline is not None:
    lines.append("")
    lines.append(f"Raw-pixel baseline (top half + N(0, 0.05²) noise): "
                 f"{baseline:.3f}")
  return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
  """Writes row dicts (union of keys) to `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  keys = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    for r in rows:
      w.writerow({k: r.get(k, "") for k in keys})


def curves(rows: list[dict], metric: str):
  """(steps, mean, std) of `metric` over seeds, per evaluation step that has
  it (the exact probe may run at only some of them)."""
  rows = [r for r in rows if metric in r]
  steps = sorted({r["step"] for r in rows})
  mu, sd = [], []
  for st in steps:
    m, s, _ = mean_std([r[metric] for r in rows if r["step"] == st])
    mu.append(m)
    sd.append(s)
  return np.asarray(steps), np.asarray(mu), np.asarray(sd)


def plot_panels(results: dict[str, list[dict]], panels: list[tuple],
                path: str, *, baseline: Optional[float] = None,
                suptitle: str = "") -> None:
  """One panel per (metric, y-label[, substring]): mean ± std bands per config.

  With a substring, the panel shows only configs whose name contains it.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
  axes = np.atleast_1d(axes)
  for ax, panel in zip(axes, panels):
    metric, ylabel = panel[:2]
    only = panel[2] if len(panel) > 2 else ""
    for cfg, rows in results.items():
      if only not in cfg or not any(metric in r for r in rows):
        continue
      x, mu, sd = curves(rows, metric)
      ax.plot(x, mu, label=cfg, lw=1.6, marker="o" if len(x) < 4 else None)
      ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    if baseline is not None and metric == "accuracy":
      ax.axhline(baseline, ls="--", color="k", lw=1, label="pixels")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  if suptitle:
    fig.suptitle(suptitle, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def run_size(settings: Settings, full: Settings = Settings()) -> str:
  """"quick", "full" (the paper's setting) or "<steps>steps_<seeds>seeds"."""
  if settings.quick:
    return "quick"
  if (settings.steps, settings.seeds, settings.eval_every) == (
      full.steps, full.seeds, full.eval_every):
    return "full"
  return f"{settings.steps}steps_{settings.seeds}seeds"


def run_tag(settings: Settings, full: Settings = Settings()) -> str:
  """`<dataset>_<run_size>_<variant>`: the output files' names."""
  return f"{settings.dataset}_{run_size(settings, full)}_{settings.variant}"


def report(name: str, results: dict[str, list[dict]], settings: Settings,
           metrics: list[str], panels: list[tuple[str, str]], *,
           baseline: Optional[float] = None, title: str = "",
           wall_s: Optional[float] = None,
           full: Settings = Settings()) -> str:
  """Prints the table and writes `<out_dir>/<name>.csv` and the figure PNG."""
  all_rows = []
  for cfg, rows in results.items():
    all_rows += [dict(r, config=cfg) for r in rows]
  tag = run_tag(settings, full)
  csv_path = os.path.join(settings.out_dir, f"{name}_{tag}.csv")
  png_path = os.path.join(settings.fig_dir, f"tschannen_{name}_{tag}.png")
  write_csv(all_rows, csv_path)
  sub = (f"{settings.dataset}, {settings.steps} steps, {settings.seeds} seeds,"
         f" {settings.variant} setting")
  plot_panels(results, panels, png_path, baseline=baseline,
              suptitle=f"{title} — {sub}")
  table = summary_table(results, metrics, baseline=baseline,
                        title=f"{title} ({sub})")
  if wall_s is not None:
    table += f"\n\nWall time: {wall_s:.0f} s"
  mine = [t for t in TIMINGS if t["name"] in results]
  if mine:
    table += "\n\n" + timing_lines(mine, full)
  print(table, flush=True)
  print(f"wrote {csv_path} and {png_path}", flush=True)
  with open(os.path.join(settings.out_dir, f"{name}_{tag}.md"), "w") as f:
    f.write(table + "\n")
  return table
