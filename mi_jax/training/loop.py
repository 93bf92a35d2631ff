"""The generic trainer: `train(config, workdir)` and `evaluate(workdir)`.

`train` builds the data, model, loss and a jitted train step from a config
(sharded over a mesh of all devices when there is more than one), restores the
latest checkpoint of `workdir` if any (train state + data-iterator position),
and loops: progress bar, metrics every `log_every` steps, the bound on the
held-out test split every `eval_every`, the linear-probe accuracy every
`probe_every`, a checkpoint every `checkpoint_every`. SIGTERM / SIGINT save a
checkpoint and return; a non-finite loss stops with a clear message and keeps
the last good checkpoint. At the end: final evaluation (linear probe of the
learned features beside the raw-pixel baseline, kNN, held-out bound),
`summary.json` and `curves.png`.

The step key of step t (1-based) is `fold_in(key(seed), t)`, so a resumed run
replays exactly the steps an uninterrupted one would (bitwise on CPU).
"""

import dataclasses
import functools
import inspect
import json
import math
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from mi_jax.training import checkpoint as checkpoint_lib
from mi_jax.training import config as config_lib
from mi_jax.training import metrics as metrics_lib
from mi_jax.training.state import init_train_state, merge_model
from mi_jax.training.step import make_eval_step, make_train_step

SUMMARY_FILENAME = "summary.json"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
           "float16": jnp.float16}


class NonFiniteLossError(RuntimeError):
  """The loss or gradients became NaN/inf; the run stopped."""


def _log(msg: str) -> None:
  """Prints a line from process 0 (above the progress bar when one is shown)."""
  if jax.process_index() != 0:
    return
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    tqdm.write(msg)
  except ImportError:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Building a run from its config.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for values a run cannot use."""
  def positive(name):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  for name in ("batch_size", "steps", "log_every", "eval_every",
               "probe_every", "checkpoint_every", "keep_checkpoints"):
    positive(name)
  if not config.lr > 0 or not math.isfinite(config.lr):
    raise ValueError(f"config.lr must be a positive number, got {config.lr!r}")
  if config.noise_std < 0:
    raise ValueError(f"config.noise_std must be >= 0, got {config.noise_std!r}")
  if config.grad_clip < 0:
    raise ValueError(f"config.grad_clip must be >= 0 (0: off), got {config.grad_clip!r}")
  if config.compute_dtype not in _DTYPES:
    raise ValueError(f"config.compute_dtype must be one of {sorted(_DTYPES)}, "
                     f"got {config.compute_dtype!r}")


def _kwargs(node) -> dict:
  if node is None:
    return {}
  if isinstance(node, ml_collections.ConfigDict):
    node = node.to_dict()
  return {k: tuple(v) if isinstance(v, list) else v for k, v in node.items()}


def _make_encoder(name: str, kwargs: dict, view_BxHxWxC, rngs: nnx.Rngs):
  """`encoders.make(name, ...)`, filling input sizes the config leaves out.

  From the view's shape: `in_dim` / `dim` (flattened size, MLP-like encoders)
  and `in_channels` (last axis, conv encoders), when the encoder takes them.
  """
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
  return int(np.prod(z.shape[1:]))


def build_model(config, images_BxHxWxC, views_fn, *, seed: int):
  """The `MultiviewModel` (g1, g2 or shared g1, critic) for a config."""
  from mi_jax import critics  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives.multiview import MultiviewModel  # pylint: disable=g-import-not-at-top
  rngs = nnx.Rngs(seed)
  v1, v2 = views_fn(jnp.asarray(images_BxHxWxC[:2]), jax.random.key(0))  # Shapes.
  enc_kwargs = _kwargs(config.encoder.get("kwargs"))
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
                        **_kwargs(config.critic.get("kwargs")))
  return MultiviewModel(g1, g2, critic)


def build_optimizer(config) -> optax.GradientTransformation:
  """Adam(lr), preceded by global-norm clipping when `config.grad_clip > 0`."""
  tx = optax.adam(config.lr)
  if config.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
  return tx


@dataclasses.dataclass
class Run:
  """Everything built from a config: data, model pieces and jitted functions."""
  config: ml_collections.ConfigDict
  train_arrays: dict
  test_arrays: dict
  views_fn: Callable
  graphdef: Any
  state: Any
  tx: optax.GradientTransformation
  loss_fn: Callable
  mesh: Any
  train_step: Callable
  eval_step: Callable
  features: Callable


@functools.lru_cache(maxsize=8)
def _load_arrays(name: str, split: str, data_dir: str | None) -> dict:
  """`data.load_arrays`, cached per process (read-only NumPy arrays)."""
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  arrays = data_lib.load_arrays(name, split, data_dir=data_dir)
  for array in arrays.values():
    array.flags.writeable = False
  return arrays


# Config fields that only steer the loop, not what `build_run` builds.
_LOOP_ONLY_FIELDS = ("steps", "log_every", "eval_every", "probe_every",
                     "checkpoint_every", "keep_checkpoints", "progress_bar",
                     "probe")
_RUN_CACHE: dict = {}
_RUN_CACHE_SIZE = 4


def build_run(config: ml_collections.ConfigDict) -> Run:
  """Loads the data and builds model, optimizer, loss and the jitted steps.

  Runs built from configs that differ only in loop settings (steps, logging,
  evaluation and checkpoint intervals) share their jitted functions within a
  process, so a resumed or repeated run in the same process compiles nothing
  again; the returned state is always a fresh copy of the initial state.
  """
  validate_config(config)
  fields = {k: v for k, v in config.to_dict().items()
            if k not in _LOOP_ONLY_FIELDS}
  key = (json.dumps(fields, sort_keys=True, default=str), jax.device_count())
  cached = _RUN_CACHE.get(key)
  if cached is None:
    cached = _build_run(config)
    cached.state = jax.device_get(cached.state)  # Host copy: never donated.
    if len(_RUN_CACHE) >= _RUN_CACHE_SIZE:
      _RUN_CACHE.pop(next(iter(_RUN_CACHE)))
    _RUN_CACHE[key] = cached
  if cached.mesh is not None:
    from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
    state = sharding.replicate(cached.state, cached.mesh)
  else:
    state = jax.tree.map(jnp.array, cached.state)
  return dataclasses.replace(cached, config=config, state=state)


def _build_run(config: ml_collections.ConfigDict) -> Run:
  """`build_run` without the cache."""
  from mi_jax import views as views_lib  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives.multiview import make_multiview_loss  # pylint: disable=g-import-not-at-top
  validate_config(config)
  num_devices = jax.device_count()
  use_mesh = config.use_mesh and num_devices > 1
  if use_mesh and config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} must divide across the "
        f"{num_devices} devices of the mesh (use a multiple of {num_devices}, "
        "or --config.use_mesh=false to train on one device)")
  train_arrays = _load_arrays(config.dataset, "train", config.data_dir)
  test_arrays = _load_arrays(config.dataset, "test", config.data_dir)
  views_fn = views_lib.make_views(config.views)
  # Built under jit: one compiled initialiser instead of one per eager op.
  model = nnx.jit(lambda x: build_model(config, x, views_fn, seed=config.seed))(
      jnp.asarray(train_arrays["image"][:2]))
  tx = build_optimizer(config)
  graphdef, state = init_train_state(model, tx)
  loss_fn = make_multiview_loss(
      views=views_fn, bound=config.bound.name,
      bound_kwargs=_kwargs(config.bound.get("kwargs")) or None,
      noise_std=float(config.noise_std))
  dtype = _DTYPES[config.compute_dtype]
  compute_dtype = None if dtype == jnp.float32 else dtype
  plain_step = make_train_step(graphdef, tx, loss_fn, compute_dtype=compute_dtype)

  def step(state, batch, base_key):
    # Step t (1-based) uses fold_in(base_key, t), inside jit: no extra dispatch.
    return plain_step(state, batch, jax.random.fold_in(base_key, state.step + 1))

  eval_step = make_eval_step(graphdef, loss_fn, compute_dtype=compute_dtype)

  mesh = None
  if use_mesh:
    from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
    mesh = sharding.make_mesh()
    train_step = sharding.shard_train_step(step, mesh, donate_state=True)
    eval_step = sharding.shard_train_step(eval_step, mesh,
                                          has_state_output=False)
    state = sharding.replicate(state, mesh)
  else:
    train_step = jax.jit(step, donate_argnums=0)
    eval_step = jax.jit(eval_step)

  def features(state, images):
    model = merge_model(graphdef, state.params, state.rest)
    model.eval()
    v1, _ = views_fn(images, jax.random.key(0))
    z = model.encode1(v1)
    return z.reshape(z.shape[0], -1).astype(jnp.float32)

  return Run(config=config, train_arrays=train_arrays, test_arrays=test_arrays,
             views_fn=views_fn, graphdef=graphdef, state=state, tx=tx,
             loss_fn=loss_fn, mesh=mesh, train_step=train_step,
             eval_step=eval_step, features=jax.jit(features))


def _make_iterator(run: Run):
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.BatchIterator(
      run.train_arrays, run.config.batch_size, seed=run.config.seed,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def _global_batch(run: Run, batch: dict) -> dict:
  """Host batch -> the array the step takes (global over hosts on a mesh)."""
  batch = {k: np.asarray(v) for k, v in batch.items()}
  if run.mesh is None or jax.process_count() == 1:
    return batch
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  return sharding.host_local_to_global(batch, run.mesh)


# --------------------------------------------------------------------------
# Evaluation.


def _same_on_all_hosts(run: Run, batch: dict) -> dict:
  """A batch every host holds in full -> arrays split over the mesh's data axis."""
  if run.mesh is None:
    return batch
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  data = sharding.batch_sharding(run.mesh)
  return {k: jax.make_array_from_callback(
      np.shape(v), data, lambda index, v=v: np.asarray(v)[index])
          for k, v in batch.items()}


def heldout_bound(run: Run, state) -> dict:
  """Mean eval metrics (the bound `mi`, `loss`) over the test split.

  Batches of `config.batch_size` (the bound depends on the batch size, e.g.
  InfoNCE <= log B), in order, the last partial batch dropped; fixed keys.
  """
  bs = run.config.batch_size
  images = run.test_arrays["image"]
  n_batches = len(images) // bs
  if n_batches == 0:
    raise ValueError(f"the test split has {len(images)} examples, fewer than "
                     f"config.batch_size={bs}")
  totals = {}
  key = jax.random.key(run.config.seed + 1)
  for i in range(n_batches):
    batch = {"image": images[i * bs:(i + 1) * bs],
             "label": run.test_arrays["label"][i * bs:(i + 1) * bs]}
    out = run.eval_step(state, _same_on_all_hosts(run, batch),
                        jax.random.fold_in(key, i))
    for k, v in out.items():
      if np.size(v) == 1:
        totals[k] = totals.get(k, 0.0) + float(v)
  return {k: v / n_batches for k, v in totals.items()}


def _features(run: Run, state, images, chunk: int = 1000) -> np.ndarray:
  return np.concatenate([
      np.asarray(run.features(state, images[i:i + chunk]))
      for i in range(0, len(images), chunk)])


def _pixels(run: Run, images) -> np.ndarray:
  v1, _ = run.views_fn(jnp.asarray(images), jax.random.key(0))
  return np.asarray(v1).reshape(len(images), -1)


def probe(run: Run, state, *, knn: bool = False, pixels: bool = False) -> dict:
  """Linear-probe (and optionally kNN / raw-pixel baseline) accuracy on the test split.

  Features are the first view's representation `g1(view1(x))`; the pixel
  baseline is the same probe on the raw first-view pixels.
  """
  from mi_jax import evaluation  # pylint: disable=g-import-not-at-top
  pc = run.config.probe
  tr, te = run.train_arrays, run.test_arrays
  f_tr = _features(run, state, tr["image"])
  f_te = _features(run, state, te["image"])
  out = {"linear_acc": float(evaluation.linear_probe(
      f_tr, tr["label"], f_te, te["label"], C=pc.C, steps=pc.steps))}
  if knn:
    out["knn_acc"] = float(evaluation.knn_accuracy(
        f_tr, tr["label"], f_te, te["label"], k=pc.knn_k))
  if pixels:
    out["pixel_linear_acc"] = float(evaluation.linear_probe(
        _pixels(run, tr["image"]), tr["label"], _pixels(run, te["image"]),
        te["label"], C=pc.C, steps=pc.steps))
  return out


def final_evaluation(run: Run, state) -> dict:
  """Held-out bound, linear probe, kNN and the raw-pixel baseline."""
  results = {f"eval/{k}": v for k, v in heldout_bound(run, state).items()}
  results.update({f"probe/{k}": v for k, v in
                  probe(run, state, knn=True, pixels=True).items()})
  return results


def format_results(results: dict, config) -> str:
  """The closing table: learned features vs raw pixels."""
  lines = [
      f"held-out {config.bound.name} bound (test split, batch {config.batch_size}): "
      f"{results.get('eval/mi', float('nan')):.3f} nats",
      f"linear probe, learned features : {100 * results['probe/linear_acc']:.1f}%",
      f"linear probe, raw view pixels  : {100 * results['probe/pixel_linear_acc']:.1f}%",
  ]
  if "probe/knn_acc" in results:
    lines.append(f"{config.probe.knn_k}-NN, learned features        : "
                 f"{100 * results['probe/knn_acc']:.1f}%")
  return "\n".join(lines)


# --------------------------------------------------------------------------
# The loop.


class _StopSignal:
  """Records SIGTERM / SIGINT so the loop can save and return between steps."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: signals stay as they are.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def poll(self, step: int, every: int) -> bool:
    """Whether to stop after `step`; agreed by all hosts every `every` steps.

    One host alone may receive the signal, and saving is collective, so on
    several hosts the flags are all-gathered at steps that are multiples of
    `every` (one process: checked every step).
    """
    if jax.process_count() == 1:
      return self.received is not None
    if step % every:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(
        np.asarray(self.received is not None))
    if np.any(flags) and self.received is None:
      self.received = "SIGTERM (on another host)"
    return bool(np.any(flags))

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


def _non_finite_message(step: int, config, last_good: int | None) -> str:
  kept = (f"the last good checkpoint (step {last_good}) is kept"
          if last_good is not None else "no checkpoint was saved")
  return (
      f"Non-finite loss or gradients at step {step}: training stopped, {kept} "
      "and the bad state was not saved. Try a lower learning rate "
      f"(--config.lr={config.lr / 10:g}), float32 compute "
      "(--config.compute_dtype=float32) if bfloat16 was on, or gradient "
      "clipping (--config.grad_clip=1.0).")


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = list(v) if isinstance(v, tuple) else v
  return out


def _warn_config_changes(config, workdir: str) -> None:
  """Logs the fields that differ from the workdir's saved config, if any."""
  if not os.path.isfile(os.path.join(workdir, config_lib.CONFIG_FILENAME)):
    return
  old = _flatten(config_lib.load_saved_config(workdir).to_dict())
  new = _flatten(json.loads(config.to_json()))
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if changed:
    _log(f"note: config differs from {workdir}/config.json in: "
         f"{', '.join(f'{k} ({old.get(k)!r} -> {new.get(k)!r})' for k in changed)}")


def train(config: ml_collections.ConfigDict, workdir: str, *,
          stop_after_step: int | None = None,
          final_eval: bool = True) -> dict:
  """Trains (or resumes) the run of `config` in `workdir`; returns a summary dict.

  Args:
    config: a ConfigDict like `experiments/configs/multiview_mnist.py`.
    workdir: the run's folder; holds `config.json`, `checkpoints/`,
      `metrics.jsonl`, `tensorboard/`, `summary.json`, `curves.png`. If it
      holds checkpoints, training resumes from the latest one.
    stop_after_step: stop (with a checkpoint, as on SIGTERM) once this step is
      reached; for tests of resumption.
    final_eval: run the final evaluation (probes, kNN, held-out bound), write
      `summary.json` and `curves.png` when the run completes.

  Returns:
    `{"step", "interrupted", "wall_s", "steps_per_s", "params_hash", ...final
    evaluation metrics when the run completed}`.

  Raises:
    NonFiniteLossError: the loss became NaN/inf (message names the step).
    ValueError: bad config values, batch not divisible across devices,
      unknown encoder/critic/bound/view names (from the registries).
    FileNotFoundError: the data set is not prepared (from the data layer).
  """
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  run = build_run(config)  # Bad configs fail here, before touching workdir.
  if is_main:
    _warn_config_changes(config, workdir)
    config_lib.save_config(config, workdir)
  iterator = _make_iterator(run)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
      async_save=False)
  start, restored, it_state = ckpt.restore_latest(
      checkpoint_lib.abstract_like(run.state))
  state = run.state
  if start is not None:
    state = restored
    iterator.set_state(it_state)
    _log(f"resumed from {ckpt.directory} at step {start}")
  start = start or 0
  last_good = start if start > 0 else None

  writer = metrics_lib.MetricsWriter(
      workdir, resume_step=start, enabled=is_main)
  base_key = jax.random.key(config.seed)
  bar = None
  if config.progress_bar and is_main and start < config.steps:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=config.steps, initial=start, unit="step",
               dynamic_ncols=True, smoothing=0.1)

  def save(step):
    ckpt.save(step, state, iterator.get_state())
    _log(f"step {step}: saved checkpoint")

  interrupted = None
  step = start
  t0 = time.time()
  finite_since_check = []  # (step, device bool) per step, read at boundaries.
  rate_step, rate_t = start, t0
  try:
    with _StopSignal() as stop:
      while step < config.steps:
        step += 1
        batch = _global_batch(run, next(iterator))
        state, m = run.train_step(state, batch, base_key)
        finite_since_check.append((step, m["finite"]))
        if bar is not None:
          bar.update(1)
        stop_now = stop.poll(step, config.log_every)
        boundary = (step % config.log_every == 0 or step % config.eval_every == 0
                    or step % config.probe_every == 0
                    or step % config.checkpoint_every == 0
                    or step == config.steps or stop_now
                    or step == stop_after_step)
        if not boundary:
          continue
        flags = jax.device_get([f for _, f in finite_since_check])
        bad = [t for (t, _), ok in zip(finite_since_check, flags) if not ok]
        finite_since_check.clear()
        if bad:
          raise NonFiniteLossError(_non_finite_message(bad[0], config, last_good))
        t_boundary = time.time()  # Steps so far are done (synced above).
        row = {}
        if step % config.log_every == 0 or step == config.steps:
          row.update(metrics_lib.to_scalars(m, "train/"))
          # Training throughput since the last log row, evaluation excluded.
          row["train/steps_per_s"] = (step - rate_step) / max(
              t_boundary - rate_t, 1e-9)
          rate_step, rate_t = step, t_boundary
        if step % config.eval_every == 0 or step == config.steps:
          row.update({f"eval/{k}": v for k, v in heldout_bound(run, state).items()})
        if step % config.probe_every == 0:
          row.update({f"probe/{k}": v for k, v in probe(run, state).items()})
        if row:
          row.pop("train/finite", None)
          writer.write(step, row)
          if bar is not None:
            bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in row.items()
                             if k in ("train/mi", "eval/mi", "probe/linear_acc")})
          shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(row.items())
                            if k != "train/steps_per_s")
          _log(f"step {step}: {shown}")
        if (step % config.checkpoint_every == 0 or step == config.steps
            or stop_now or step == stop_after_step):
          save(step)
          last_good = step
        rate_t += time.time() - t_boundary  # Evaluation time is not training.
        if stop_now:
          interrupted = stop.received
          _log(f"received {interrupted}: saved checkpoint at step {step}; run "
               "the same command again to resume")
          break
        if step == stop_after_step:
          interrupted = "stop_after_step"
          break
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
    writer.close()

  wall_s = time.time() - t0
  summary = {"step": step, "interrupted": interrupted, "wall_s": wall_s,
             "steps_per_s": (step - start) / max(wall_s, 1e-9),
             "workdir": workdir}
  if interrupted is None and final_eval:
    results = final_evaluation(run, state)
    summary.update(results)
    if is_main:
      rows = metrics_lib.read_jsonl(os.path.join(workdir, metrics_lib.METRICS_FILENAME))
      metrics_lib.plot_curves(
          rows, os.path.join(workdir, metrics_lib.CURVES_FILENAME),
          title=f"{config.dataset} {config.views}: {config.encoder.name} / "
                f"{config.critic.name} / {config.bound.name}")
      with open(os.path.join(workdir, SUMMARY_FILENAME), "w") as f:
        json.dump(summary, f, indent=2)
      _log(format_results(results, config))
  summary["state"] = state
  return summary


def restore_state(workdir: str, run: Run | None = None):
  """(run, step, state) of the latest checkpoint in `workdir`."""
  workdir = os.path.abspath(workdir)
  if run is None:
    run = build_run(config_lib.load_saved_config(workdir))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    step, state, _ = ckpt.restore_latest(checkpoint_lib.abstract_like(run.state))
  finally:
    ckpt.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: train first "
                            f"(mi-jax train --workdir {workdir})")
  return run, step, state


def evaluate(workdir: str) -> dict:
  """Restores the latest checkpoint of `workdir` and runs the final evaluation."""
  run, step, state = restore_state(workdir)
  results = final_evaluation(run, state)
  results["step"] = step
  _log(f"{workdir}: step {step}")
  _log(format_results(results, run.config))
  return results
