"""A run built from its config: the method's pieces plus the engine's compiled steps.

`build_run(config) -> Run`: imports the method module named by
`config.method` (`load_method`), calls its `build(config, seed=config.seed)`
(a `mi_jax.objectives.Method`), builds the optimizer and the initial train
state, and compiles the train / eval steps (`compile_steps`: jitted on one
device, or sharded over a mesh of all devices). `make_iterator(run)` and
`global_batch(run, batch)` turn the method's training data into the batches
the step takes; `make_feed(run)` is the input the loop uses
(`config.input`: the data set on the device with batches gathered inside
the compiled multi-step, or a background prefetch). Nothing here knows any
method.
"""

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mi_jax.objectives import Method
from mi_jax.training.state import init_train_state
from mi_jax.training.step import make_eval_step, make_train_step

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
           "float16": jnp.float16}
# Steps per compiled call on the device input path (`config.steps_per_call`).
DEFAULT_STEPS_PER_CALL = 10
INPUT_MODES = ("auto", "device", "prefetch", "host")
_REQUIRED = ("batch_size", "lr", "steps", "seed", "log_every", "eval_every",
             "probe_every", "checkpoint_every", "keep_checkpoints")


def method_name(config) -> str:
  """`config.method` (or `config.objective` of older configs)."""
  name = config.get("method", config.get("objective"))
  if not isinstance(name, str) or not name:
    raise ValueError(
        "config.method must name the method's module: a short name "
        f"({', '.join(_package_methods())}: mi_jax.objectives.<name>), a "
        f"dotted module path or a path to a .py file; got {name!r}")
  return name


def _package_methods() -> list[str]:
  """The public modules of `mi_jax.objectives` (each a method with a `build`)."""
  import pkgutil  # pylint: disable=g-import-not-at-top
  from mi_jax import objectives  # pylint: disable=g-import-not-at-top
  return sorted(m.name for m in pkgutil.iter_modules(objectives.__path__)
                if not m.name.startswith("_"))


def load_method(name: str) -> ModuleType:
  """Imports a method module: a `.py` path, a dotted path, or a name in `mi_jax.objectives`."""
  if name.endswith(".py"):
    path = os.path.abspath(name)
    if not os.path.isfile(path):
      raise ValueError(f"config.method: method file {path!r} not found")
    mod_name = "mi_jax_method_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    module = sys.modules.get(mod_name)
    if module is None:
      spec = importlib.util.spec_from_file_location(mod_name, path)
      module = importlib.util.module_from_spec(spec)
      sys.modules[mod_name] = module
      spec.loader.exec_module(module)
  else:
    dotted = name if "." in name else f"mi_jax.objectives.{name}"
    try:
      module = importlib.import_module(dotted)
    except ModuleNotFoundError as e:
      if e.name is None or not dotted.startswith(e.name):
        raise
      raise ValueError(
          f"unknown config.method {name!r}: no module {dotted!r} (methods in "
          f"mi_jax.objectives: {', '.join(_package_methods())}; or give a "
          "dotted module path or a .py file)") from None
  if not callable(getattr(module, "build", None)):
    raise ValueError(f"config.method {name!r}: module {module.__name__} has no "
                     "build(config, *, seed) -> mi_jax.objectives.Method")
  return module


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for engine values a run cannot use."""
  method_name(config)
  missing = [name for name in _REQUIRED if name not in config]
  if missing:
    raise ValueError(f"the config lacks the field(s) {', '.join(missing)} "
                     "that `mi-jax train` needs (see docs/training.md)")
  for name in _REQUIRED:
    value = config[name]
    if name in ("lr", "seed"):
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  if not config.lr > 0 or not math.isfinite(config.lr):
    raise ValueError(f"config.lr must be a positive number, got {config.lr!r}")
  if config.get("grad_clip", 0.0) < 0:
    raise ValueError(f"config.grad_clip must be >= 0 (0: off), got {config.grad_clip!r}")
  if config.get("compute_dtype", "float32") not in _DTYPES:
    raise ValueError(f"config.compute_dtype must be one of {sorted(_DTYPES)}, "
                     f"got {config.compute_dtype!r}")
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  if config.get("param_sharding", "replicated") not in sharding.PARAM_SHARDINGS:
    raise ValueError(
        f"config.param_sharding must be one of {sharding.PARAM_SHARDINGS} "
        f"('fsdp' shards parameters + optimizer state), got "
        f"{config.param_sharding!r}")
  if config.get("input", "auto") not in INPUT_MODES:
    raise ValueError(
        f"config.input must be one of {INPUT_MODES} ('device': the data set "
        "on the device, batches gathered in the compiled step; 'prefetch': "
        "batches read and placed by a background thread; 'auto': device when "
        f"it fits, else prefetch), got {config.input!r}")
  for name, default in (("steps_per_call", DEFAULT_STEPS_PER_CALL),
                        ("device_data_max_mb", 1)):
    value = config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
  shape = tuple(config.get("mesh_shape", None) or (-1,))
  if len(shape) not in (1, 2) or not all(isinstance(n, int) for n in shape):
    raise ValueError(
        f"config.mesh_shape must be (-1,) (all devices on 'data') or "
        f"(data, model) such as (-1, 2), got {shape!r}")


def _mesh(config):
  """The run's mesh: `config.mesh_shape` (-1,) -> 'data'; (d, m) -> 'data' x 'model'."""
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  shape = tuple(config.get("mesh_shape", None) or (-1,))
  return sharding.make_mesh(shape=shape,
                            axis_names=("data", "model")[:len(shape)])


def build_optimizer(config) -> optax.GradientTransformation:
  """Adam(lr), preceded by global-norm clipping when `config.grad_clip > 0`."""
  tx = optax.adam(config.lr)
  if config.get("grad_clip", 0.0) > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
  return tx


@dataclasses.dataclass
class Run:
  """A method plus the engine's pieces for it.

  `state` is the initial TrainState, placed with `state_sharding` over
  `mesh` when there is one (replicated, or FSDP-sharded parameters and
  optimizer state with `config.param_sharding="fsdp"`);
  `train_step(state, batch, base_key)` folds the step number into
  `base_key`; `eval_step(state, batch, key) -> metrics`.
  """
  config: ml_collections.ConfigDict
  method: Method
  graphdef: Any
  state: Any
  mesh: Any
  train_step: Callable
  eval_step: Callable
  state_sharding: Any = None
  gather_steps: Callable = None  # num_steps -> compiled gather multi-step
  step: Callable = None  # the pure `step(state, batch, base_key)` (not jitted)


def compile_steps(config, method: Method, graphdef, tx, mesh,
                  state_sharding=None):
  """The jitted (or mesh-sharded) steps: the one place steps are compiled.

  Returns `(train_step, eval_step, gather_steps, step)`; `gather_steps(T)`
  is `train_step` scanned over T steps that gather their batches from
  on-device data (`feed.make_gather_multi_step`), compiled once per T
  (`gather_steps(T, variable_length=True)`: up to T steps, the number given
  at each call; the loop's device feed uses this one);
  `step` is the pure step they compile.
  """
  dtype = _DTYPES[config.get("compute_dtype", "float32")]
  compute_dtype = None if dtype == jnp.float32 else dtype
  plain_step = make_train_step(graphdef, tx, method.loss_fn,
                               compute_dtype=compute_dtype)

  def step(state, batch, base_key):
    # Step t (1-based) uses fold_in(base_key, t), inside jit: no extra dispatch.
    return plain_step(state, batch, jax.random.fold_in(base_key, state.step + 1))

  eval_step = make_eval_step(graphdef, method.loss_fn,
                             compute_dtype=compute_dtype)
  from mi_jax.training import feed  # pylint: disable=g-import-not-at-top

  @functools.lru_cache(maxsize=None)
  def gather_steps(num_steps: int, variable_length: bool = False):
    if mesh is None:
      return jax.jit(feed.make_gather_multi_step(
          step, num_steps, split_key=False, variable_length=variable_length),
                     donate_argnums=0)
    return feed.shard_gather_multi_step(step, num_steps, mesh,
                                        state_sharding=state_sharding,
                                        split_key=False,
                                        variable_length=variable_length)

  if mesh is None:
    return (jax.jit(step, donate_argnums=0), jax.jit(eval_step), gather_steps,
            step)
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  return (sharding.shard_train_step(step, mesh, donate_state=True,
                                    state_sharding=state_sharding),
          sharding.shard_train_step(eval_step, mesh, has_state_output=False,
                                    state_sharding=state_sharding),
          gather_steps, step)


# Config fields that only steer the loop or the evaluation, not what
# `build_run` builds.
_LOOP_ONLY_FIELDS = ("steps", "log_every", "eval_every", "probe_every",
                     "checkpoint_every", "keep_checkpoints", "progress_bar",
                     "probe")
_RUN_CACHE: dict = {}
_RUN_CACHE_SIZE = 4


def build_run(config: ml_collections.ConfigDict) -> Run:
  """Validates the config, builds the method, optimizer, state and compiled steps.

  Runs built from configs that differ only in loop settings (steps, logging,
  evaluation and checkpoint intervals, probe options) share their method and
  jitted functions within a process, so a resumed or repeated run in the same
  process compiles nothing again; the returned state is always a fresh copy.
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
    state = sharding.place(cached.state, cached.state_sharding)
  else:
    state = jax.tree.map(jnp.array, cached.state)
  return dataclasses.replace(cached, config=config, state=state)


def _build_run(config: ml_collections.ConfigDict) -> Run:
  method = load_method(method_name(config)).build(config, seed=config.seed)
  if not isinstance(method, Method):
    raise ValueError(f"build() of config.method {method_name(config)!r} returned "
                     f"a {type(method).__name__}, not a mi_jax.objectives.Method")
  num_devices = jax.device_count()
  use_mesh = (config.get("use_mesh", True) and num_devices > 1
              and method.data_parallel)
  if use_mesh and config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} must divide across the "
        f"{num_devices} devices of the mesh (use a multiple of {num_devices}, "
        "or --config.use_mesh=false to train on one device)")
  tx = build_optimizer(config)
  graphdef, state = init_train_state(method.model, tx)
  mesh = state_sharding = None
  if use_mesh:
    from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
    mesh = _mesh(config)
    state_sharding = sharding.state_shardings(
        state, mesh, params=config.get("param_sharding", "replicated"),
        min_size=int(config.get("fsdp_min_size", 2**12)))
  train_step, eval_step, gather_steps, step = compile_steps(
      config, method, graphdef, tx, mesh, state_sharding)
  return Run(config=config, method=method, graphdef=graphdef,
             state=jax.device_get(state), mesh=mesh, train_step=train_step,
             eval_step=eval_step, state_sharding=state_sharding,
             gather_steps=gather_steps, step=step)


def make_iterator(run: Run):
  """The run's deterministic, host-sharded, checkpointable train iterator."""
  shard, count = jax.process_index(), jax.process_count()
  if run.method.make_iterator is not None:
    return run.method.make_iterator(shard, count)
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.BatchIterator(run.method.train_data, run.config.batch_size,
                                seed=run.config.seed, shard_index=shard,
                                shard_count=count)


def global_batch(run: Run, batch):
  """Host batch -> what the step takes (a global array over hosts on a mesh)."""
  batch = jax.tree.map(np.asarray, batch)
  if run.mesh is None or jax.process_count() == 1:
    return batch
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  return sharding.host_local_to_global(batch, run.mesh)


def _nbytes(tree) -> int:
  return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


def input_mode(run: Run) -> str:
  """The input path of a run: "device", "prefetch" or "host".

  `config.input` ("auto" by default): "device" when the method gives its
  training data as a dict of arrays of at most `config.device_data_max_mb`
  MiB (default 1024; each device holds a full copy), else "prefetch".
  "host" is the plain path (read and copy inside the loop, no overlap).
  """
  mode = run.config.get("input", "auto")
  data = run.method.train_data
  arrays = run.method.make_iterator is None and isinstance(data, dict)
  if mode == "device" and not arrays:
    raise ValueError(
        "config.input='device' needs the method's training data as a dict of "
        "arrays (this method gives a random-access source or its own "
        "iterator); use --config.input=prefetch (or auto).")
  if mode != "auto":
    return mode
  limit = run.config.get("device_data_max_mb", 1024) * 2**20
  return "device" if arrays and _nbytes(data) <= limit else "prefetch"


def make_feed(run: Run, iterator_state=None):
  """The loop's input: a `feed.DeviceFeed` or `feed.IteratorFeed` (see `input_mode`).

  `iterator_state` (from a checkpoint) moves it to that position; `state()`
  of the returned feed is the position after the last consumed batch, the
  same dict (`BatchIterator.get_state`) whatever the mode, so a run can
  resume under another mode. Call `close()` when done.
  """
  from mi_jax.training import feed  # pylint: disable=g-import-not-at-top
  mode = input_mode(run)
  if mode == "device":
    from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    # Every host holds all the data and draws the global batch's indices.
    iterator = data_lib.BatchIterator(run.method.train_data,
                                      run.config.batch_size,
                                      seed=run.config.seed, shard_index=0,
                                      shard_count=1)
    if iterator_state is not None:
      iterator.set_state(iterator_state)
    where = None
    if run.mesh is not None:
      from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
      where = sharding.replicated(run.mesh)
    # One compiled program of up to steps_per_call steps for every call, so
    # where calls end (logs, checkpoints, a resume) cannot change the numbers.
    return feed.DeviceFeed(
        feed.DeviceData(run.method.train_data, iterator, where),
        run.gather_steps,
        max_steps=run.config.get("steps_per_call", DEFAULT_STEPS_PER_CALL))
  iterator = make_iterator(run)
  if iterator_state is not None:
    iterator.set_state(iterator_state)
  if mode == "host":
    return feed.IteratorFeed(run.train_step,
                             (global_batch(run, b) for b in iterator),
                             iterator.get_state)
  prefetcher = feed.Prefetcher(iterator, functools.partial(_place_batch, run),
                               depth=2)
  return feed.IteratorFeed(run.train_step, prefetcher, prefetcher.state,
                           prefetcher.close)


def _place_batch(run: Run, batch):
  """Host batch -> device batch where the step wants it (a prefetch thread calls this)."""
  batch = jax.tree.map(np.asarray, batch)
  if run.mesh is None:
    return jax.device_put(batch)
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return sharding.shard_batch(batch, run.mesh)
  return sharding.host_local_to_global(batch, run.mesh)
