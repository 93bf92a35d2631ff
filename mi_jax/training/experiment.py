"""What a run is made of, built from its config, and how it is evaluated.

`build_run(config) -> Run`: the data (whole splits as NumPy), the model and its
loss from a registered *objective* (`"multiview"` by default), the optimizer,
and the jitted train / eval / feature functions (sharded over a mesh of all
devices when there is more than one). `final_evaluation(run, state)`: the
bound on the held-out test split, the linear probe and kNN accuracy of the
learned features and the same probe on the raw view pixels.

An objective builder `builder(config, images_BxHxWxC, *, seed) -> Objective`
turns a config into a model and `loss_fn(model, batch, key) -> (loss,
metrics)` (metrics hold the bound under `Objective.bound_key`), plus
`features(model, images) -> feats_NxD` for the probes and `pixels(images)` for
the raw-pixel baseline. `register_objective(name, builder)` adds one, selected
with `config.objective`.
"""

import dataclasses
import functools
import inspect
import json
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from mi_jax.training.state import init_train_state, merge_model
from mi_jax.training.step import make_eval_step, make_train_step

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
           "float16": jnp.float16}


# --------------------------------------------------------------------------
# Objectives: config -> model, loss, features.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for values a run cannot use."""
  if objective_name(config) not in _OBJECTIVES:
    raise ValueError(f"unknown config.objective {objective_name(config)!r}; "
                     f"registered objectives: {sorted(_OBJECTIVES)}")
  required = ("dataset", "batch_size", "lr", "steps", "seed", "log_every",
              "eval_every", "probe_every", "checkpoint_every",
              "keep_checkpoints")
  missing = [name for name in required if name not in config]
  if missing:
    raise ValueError(f"the config lacks the field(s) {', '.join(missing)} "
                     "that `mi-jax train` needs (see "
                     "experiments/configs/multiview_mnist.py)")

  def positive(name):
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  for name in ("batch_size", "steps", "log_every", "eval_every",
               "probe_every", "checkpoint_every", "keep_checkpoints"):
    positive(name)
  if not config.lr > 0 or not math.isfinite(config.lr):
    raise ValueError(f"config.lr must be a positive number, got {config.lr!r}")
  if config.get("noise_std", 0.0) < 0:
    raise ValueError(f"config.noise_std must be >= 0, got {config.noise_std!r}")
  if config.get("grad_clip", 0.0) < 0:
    raise ValueError(f"config.grad_clip must be >= 0 (0: off), got {config.grad_clip!r}")
  if config.get("compute_dtype", "float32") not in _DTYPES:
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


@dataclasses.dataclass(frozen=True)
class Objective:
  """A model and its loss, plus what the probes need.

  Attributes:
    model: one `nnx.Module` holding every trainable piece.
    loss_fn: `loss_fn(model, batch, key) -> (loss, metrics)`, minimised.
    features: `features(model, images_BxHxWxC) -> feats_BxD` (model in eval
      mode, traced under jit) for the linear probe and kNN.
    pixels: `pixels(images_BxHxWxC) -> raw_BxP`, the raw-pixel baseline's
      input (the same view the features see).
    bound_key: the name of the bound in `loss_fn`'s metrics.
  """
  model: nnx.Module
  loss_fn: Callable
  features: Callable
  pixels: Callable
  bound_key: str = "mi"


def build_multiview(config, images_BxHxWxC, *, seed: int) -> Objective:
  """Tschannen et al. 2020's multiview objective: `I(g1(x1); g2(x2))` with any bound and critic.

  Features and pixel baseline are those of the first view.
  """
  from mi_jax import views as views_lib  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives.multiview import make_multiview_loss  # pylint: disable=g-import-not-at-top
  views_fn = views_lib.make_views(config.views)
  # Built under jit: one compiled initialiser instead of one per eager op.
  model = nnx.jit(lambda x: build_model(config, x, views_fn, seed=seed))(
      jnp.asarray(images_BxHxWxC[:2]))
  loss_fn = make_multiview_loss(
      views=views_fn, bound=config.bound.name,
      bound_kwargs=_kwargs(config.bound.get("kwargs")) or None,
      noise_std=float(config.noise_std))

  def features(model, images):
    v1, _ = views_fn(images, jax.random.key(0))
    z = model.encode1(v1)
    return z.reshape(z.shape[0], -1)

  def pixels(images):
    v1, _ = views_fn(images, jax.random.key(0))
    return v1.reshape(v1.shape[0], -1)

  return Objective(model=model, loss_fn=loss_fn, features=features,
                   pixels=pixels)


_OBJECTIVES: dict[str, Callable[..., Objective]] = {"multiview": build_multiview}


def register_objective(name: str, builder: Callable[..., Objective]) -> None:
  """Makes `config.objective = name` build its run with `builder(config, images, *, seed)`."""
  if name in _OBJECTIVES and _OBJECTIVES[name] is not builder:
    raise ValueError(f"objective {name!r} is already registered")
  _OBJECTIVES[name] = builder


def objective_name(config) -> str:
  """`config.objective`, `"multiview"` when the config has no such field."""
  name = config.get("objective", "multiview")
  if not isinstance(name, str):
    raise ValueError(
        "config.objective must name a registered objective "
        f"({sorted(_OBJECTIVES)}), got a {type(name).__name__}; configs with "
        "their own runner (e.g. experiments/configs/dim_*.py, run by "
        "experiments/dim/train_dim.py) do not run under `mi-jax train`")
  return name


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
  graphdef: Any
  state: Any
  tx: optax.GradientTransformation
  loss_fn: Callable
  mesh: Any
  train_step: Callable
  eval_step: Callable
  features: Callable
  pixels: Callable
  bound_key: str


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
    cached = _build_run(config)  # Its state is a host copy: never donated.
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
  """`build_run` without the cache (the state stays on the host)."""
  validate_config(config)
  num_devices = jax.device_count()
  use_mesh = config.get("use_mesh", True) and num_devices > 1
  if use_mesh and config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} must divide across the "
        f"{num_devices} devices of the mesh (use a multiple of {num_devices}, "
        "or --config.use_mesh=false to train on one device)")
  train_arrays = _load_arrays(config.dataset, "train", config.get("data_dir"))
  test_arrays = _load_arrays(config.dataset, "test", config.get("data_dir"))
  objective = _OBJECTIVES[objective_name(config)](
      config, train_arrays["image"], seed=config.seed)
  tx = build_optimizer(config)
  graphdef, state = init_train_state(objective.model, tx)
  dtype = _DTYPES[config.get("compute_dtype", "float32")]
  compute_dtype = None if dtype == jnp.float32 else dtype
  plain_step = make_train_step(graphdef, tx, objective.loss_fn,
                               compute_dtype=compute_dtype)

  def step(state, batch, base_key):
    # Step t (1-based) uses fold_in(base_key, t), inside jit: no extra dispatch.
    return plain_step(state, batch, jax.random.fold_in(base_key, state.step + 1))

  eval_step = make_eval_step(graphdef, objective.loss_fn,
                             compute_dtype=compute_dtype)
  mesh = None
  if use_mesh:
    from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
    mesh = sharding.make_mesh()
    train_step = sharding.shard_train_step(step, mesh, donate_state=True)
    eval_step = sharding.shard_train_step(eval_step, mesh,
                                          has_state_output=False)
  else:
    train_step = jax.jit(step, donate_argnums=0)
    eval_step = jax.jit(eval_step)

  def features(state, images):
    model = merge_model(graphdef, state.params, state.rest)
    model.eval()
    return objective.features(model, images).astype(jnp.float32)

  return Run(config=config, train_arrays=train_arrays, test_arrays=test_arrays,
             graphdef=graphdef, state=jax.device_get(state), tx=tx,
             loss_fn=objective.loss_fn, mesh=mesh, train_step=train_step,
             eval_step=eval_step, features=jax.jit(features),
             pixels=jax.jit(objective.pixels), bound_key=objective.bound_key)


def make_iterator(run: Run):
  """The run's deterministic, host-sharded iterator over the train split."""
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.BatchIterator(
      run.train_arrays, run.config.batch_size, seed=run.config.seed,
      shard_index=jax.process_index(), shard_count=jax.process_count())


def global_batch(run: Run, batch: dict) -> dict:
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


def _pixels(run: Run, images, chunk: int = 1000) -> np.ndarray:
  return np.concatenate([
      np.asarray(run.pixels(images[i:i + chunk]), np.float32)
      for i in range(0, len(images), chunk)])


def probe(run: Run, state, *, knn: bool = False, pixels: bool = False) -> dict:
  """Linear-probe (and optionally kNN / raw-pixel baseline) accuracy on the test split.

  Features are the objective's (multiview: the first view's representation
  `g1(view1(x))`); the pixel baseline is the same probe on the raw pixels of
  that view.
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
  """Held-out bound (also as `eval/bound`), linear probe, kNN, raw-pixel baseline."""
  results = {f"eval/{k}": v for k, v in heldout_bound(run, state).items()}
  results["eval/bound"] = results.get(f"eval/{run.bound_key}", float("nan"))
  results.update({f"probe/{k}": v for k, v in
                  probe(run, state, knn=True, pixels=True).items()})
  return results


def format_results(results: dict, config) -> str:
  """The closing table: learned features vs raw pixels."""
  bound = config.get("bound", {}).get("name", "")
  lines = [
      f"held-out {bound} bound (test split, batch {config.batch_size}): "
      f"{results.get('eval/bound', float('nan')):.3f} nats",
      f"linear probe, learned features : {100 * results['probe/linear_acc']:.1f}%",
      f"linear probe, raw view pixels  : {100 * results['probe/pixel_linear_acc']:.1f}%",
  ]
  if "probe/knn_acc" in results:
    lines.append(f"{config.probe.knn_k}-NN, learned features        : "
                 f"{100 * results['probe/knn_acc']:.1f}%")
  return "\n".join(lines)
