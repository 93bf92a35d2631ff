"""What a run is made of, built from its config, and how it is evaluated.

`build_run(config) -> Run`: the data (whole splits as NumPy), the model and its
loss from a registered *objective* (`"multiview"` by default), the optimizer,
and the jitted train / eval / feature functions (sharded over a mesh of all
devices when there is more than one). `final_evaluation(run, state)`: the
bound on the held-out test split, the linear probe and kNN accuracy of the
learned features and the same probe on the raw view pixels; optionally
(`config.probe.mlp`, `config.probe.random_baseline`) an MLP probe and the same
probes on a randomly initialised model.

An objective builder `builder(config, images_BxHxWxC, *, seed) -> Objective`
turns a config into a model and `loss_fn(model, batch, key) -> (loss,
metrics)` (metrics hold the bound under `Objective.bound_key`), plus
`features(model, images)` for the probes (`feats_NxD`, or a dict of named
feature sets, e.g. DIM's conv / fc / Y) and `pixels(images)` for the raw-pixel
baseline. `register_objective(name, builder)` adds one, selected with
`config.objective`. Registered here: `"multiview"` (Tschannen et al. 2020)
and `"dim"` (Deep InfoMax, Hjelm et al. 2019; options under `config.dim`).
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
    features: `features(model, images_BxHxWxC) -> feats_BxD` or a dict of
      named feature sets `{name: feats_BxD}` (model in eval mode, traced under
      jit) for the linear probe and kNN; each set is probed separately.
    pixels: `pixels(images_BxHxWxC) -> raw_BxP`, the raw-pixel baseline's
      input (the same view the features see).
    bound_key: the name of the bound in `loss_fn`'s metrics.
    primary: with named feature sets, the one reported as `linear_acc` (also
      `knn_acc`, `mlp_acc`); every set is reported as `linear_acc/NAME`.
  """
  model: nnx.Module
  loss_fn: Callable
  features: Callable
  pixels: Callable
  bound_key: str = "mi"
  primary: str | None = None


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


def build_dim_model(config, in_channels: int, *, seed: int):
  """The `DIMModel` of a DIM config: encoder + the critics whose weights are non-zero."""
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives import dim  # pylint: disable=g-import-not-at-top
  rngs = nnx.Rngs(seed)
  enc_kwargs = _kwargs(config.encoder.get("kwargs"))
  enc_kwargs.setdefault("in_channels", in_channels)
  encoder = encoders.make(config.encoder.name, rngs=rngs, **enc_kwargs)
  size = config.dim.get("crop_size") or enc_kwargs.get("image_size", 32)
  local_shape = nnx.eval_shape(
      lambda m, x: m.encode(x)["local"], encoder,
      jax.ShapeDtypeStruct((1, size, size, enc_kwargs["in_channels"]),
                           jnp.float32)).shape[1:]
  d, cr = config.dim, config.critic
  return dim.make_dim_model(
      encoder, rngs=rngs, local_shape=tuple(local_shape),
      alpha=d.alpha, beta=d.beta, gamma=d.gamma,
      local_embed_dim=cr.local_embed_dim, local_hidden_dim=cr.local_hidden_dim,
      local_score_scale=cr.get("local_score_scale", 1.0),
      global_conv_channels=tuple(cr.global_conv_channels),
      global_hidden_dims=tuple(cr.global_hidden_dims),
      prior_hidden_dims=tuple(cr.prior_hidden_dims))


def build_dim(config, images_BxHxWxC, *, seed: int) -> Objective:
  """Deep InfoMax (Hjelm et al. 2019), `mi_jax.objectives.dim`, options in `config.dim`.

  `config.dim`: `estimator` (jsd / infonce / dv), weights `alpha` (global),
  `beta` (local), `gamma` (prior), `prior_encoder_loss`, `local_contrast`,
  `crop_size` (random crops in training, centre crops for the probes),
  `flip`; `config.critic` holds the critic / discriminator sizes. Features:
  the encoder's `conv`, `fc` and `y` (Y is the primary one); pixel baseline:
  the (centre-cropped) image.
  """
  from mi_jax.objectives import dim  # pylint: disable=g-import-not-at-top
  d = config.dim
  crop = d.get("crop_size")
  # Built under jit: one compiled initialiser instead of one per eager op.
  model = nnx.jit(lambda: build_dim_model(
      config, int(images_BxHxWxC.shape[-1]), seed=seed))()
  loss_fn = dim.make_dim_loss(
      estimator=d.estimator, alpha=d.alpha, beta=d.beta, gamma=d.gamma,
      crop_size=crop, flip=d.get("flip", False),
      prior_encoder_loss=d.get("prior_encoder_loss", "minimax"),
      local_contrast=d.get("local_contrast", "locations"))

  def features(model, images):
    feats = model.encoder.encode(dim.center_crop(images, crop))
    return {k: feats[k].reshape(images.shape[0], -1) for k in ("conv", "fc", "y")}

  def pixels(images):
    x = dim.center_crop(images, crop)
    return x.reshape(x.shape[0], -1)

  return Objective(model=model, loss_fn=loss_fn, features=features,
                   pixels=pixels,
                   bound_key="mi_local" if d.beta else "mi_global",
                   primary="y")


_OBJECTIVES: dict[str, Callable[..., Objective]] = {"multiview": build_multiview,
                                                    "dim": build_dim}


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
        "DIM's options live under config.dim, with config.objective='dim')")
  return name


def build_optimizer(config) -> optax.GradientTransformation:
  """Adam(lr), preceded by global-norm clipping when `config.grad_clip > 0`."""
  tx = optax.adam(config.lr)
  if config.get("grad_clip", 0.0) > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
  return tx


@dataclasses.dataclass
class Run:
  """Everything built from a config: data, model pieces and jitted functions.

  `train_data` feeds the train iterator (arrays, or a random-access source
  with `config.streaming`); `train_arrays` / `test_arrays` are the labelled
  probe splits (`config.probe_train_split` / `probe_test_split`, default
  train / test; the test split also gives the held-out bound).
  """
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
  train_data: Any = None
  primary: str | None = None
  init_model: Callable | None = None   # seed -> a freshly initialised model
  raw_features: Callable | None = None  # the objective's features(model, x)


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
  data_dir = config.get("data_dir")
  train_arrays = _load_arrays(
      config.dataset, config.get("probe_train_split", "train"), data_dir)
  test_arrays = _load_arrays(
      config.dataset, config.get("probe_test_split", "test"), data_dir)
  train_split = config.get("train_split", "train")
  if config.get("streaming", False):
    from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    train_data = data_lib.data_source(config.dataset, train_split,
                                      data_dir=data_dir)
  elif train_split == config.get("probe_train_split", "train"):
    train_data = train_arrays
  else:
    train_data = _load_arrays(config.dataset, train_split, data_dir)
  builder = _OBJECTIVES[objective_name(config)]
  objective = builder(config, train_arrays["image"], seed=config.seed)
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
    return jax.tree.map(lambda f: f.astype(jnp.float32),
                        objective.features(model, images))

  return Run(config=config, train_arrays=train_arrays, test_arrays=test_arrays,
             graphdef=graphdef, state=jax.device_get(state), tx=tx,
             loss_fn=objective.loss_fn, mesh=mesh, train_step=train_step,
             eval_step=eval_step, features=jax.jit(features),
             pixels=jax.jit(objective.pixels), bound_key=objective.bound_key,
             train_data=train_data, primary=objective.primary,
             init_model=lambda seed: builder(
                 config, train_arrays["image"], seed=seed).model,
             raw_features=objective.features)


def make_iterator(run: Run):
  """The run's deterministic, host-sharded iterator over the train split."""
  from mi_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.BatchIterator(
      run.train_data if run.train_data is not None else run.train_arrays,
      run.config.batch_size, seed=run.config.seed,
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


def _features(run: Run, state, images, chunk: int = 1000) -> dict:
  """{name: feats_NxD} (name None for an objective with a single feature set)."""
  outs = [jax.device_get(run.features(state, images[i:i + chunk]))
          for i in range(0, len(images), chunk)]
  if isinstance(outs[0], dict):
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}
  return {None: np.concatenate([np.asarray(o) for o in outs])}


def _pixels(run: Run, images, chunk: int = 1000) -> np.ndarray:
  return np.concatenate([
      np.asarray(run.pixels(images[i:i + chunk]), np.float32)
      for i in range(0, len(images), chunk)])


def probe(run: Run, state, *, knn: bool = False, pixels: bool = False,
          mlp: bool = False) -> dict:
  """Linear-probe (optionally kNN, MLP, raw-pixel baseline) accuracy on the test split.

  Features are the objective's (multiview: the first view's representation
  `g1(view1(x))`); the pixel baseline is the same probe on the raw pixels of
  that view. With named feature sets (DIM: conv / fc / y) each is reported
  as `linear_acc/NAME` (`knn_acc/NAME`, `mlp_acc/NAME`) and the primary one
  also as `linear_acc` (`knn_acc`, `mlp_acc`).
  """
  from mi_jax import evaluation  # pylint: disable=g-import-not-at-top
  pc = run.config.probe
  tr, te = run.train_arrays, run.test_arrays
  f_tr = _features(run, state, tr["image"])
  f_te = _features(run, state, te["image"])
  out = {}
  for name in f_tr:
    sfx = "" if name is None else f"/{name}"
    out[f"linear_acc{sfx}"] = float(evaluation.linear_probe(
        f_tr[name], tr["label"], f_te[name], te["label"], C=pc.C,
        steps=pc.steps))
    if knn:
      out[f"knn_acc{sfx}"] = float(evaluation.knn_accuracy(
          f_tr[name], tr["label"], f_te[name], te["label"], k=pc.knn_k))
    if mlp:
      out[f"mlp_acc{sfx}"] = float(evaluation.mlp_probe(
          f_tr[name], tr["label"], f_te[name], te["label"],
          hidden=pc.get("mlp_hidden", 200), dropout=pc.get("mlp_dropout", 0.5),
          epochs=pc.get("mlp_epochs", 50), seed=run.config.seed))
  if run.primary is not None and run.primary in f_tr:
    for kind in ("linear", "knn", "mlp"):
      if f"{kind}_acc/{run.primary}" in out:
        out[f"{kind}_acc"] = out[f"{kind}_acc/{run.primary}"]
  if pixels:
    out["pixel_linear_acc"] = float(evaluation.linear_probe(
        _pixels(run, tr["image"]), tr["label"], _pixels(run, te["image"]),
        te["label"], C=pc.C, steps=pc.steps))
  return out


def random_state(run: Run, seed: int, *, batches: int = 20):
  """The train state of a randomly initialised model (seed `seed`), BatchNorm
  statistics estimated on the probe train images (`batches` train-mode
  forward passes of the feature function, no gradient step): the fair
  "random encoder" baseline, untrained but normalised to the data as a
  trained model is.
  """
  model = run.init_model(seed)
  graphdef, state = init_train_state(model, optax.identity())

  @jax.jit
  def update(params, rest, x):
    model = merge_model(graphdef, params, rest)
    model.train()
    run.raw_features(model, x)
    return nnx.split(model, nnx.Param, ...)[2]

  images = run.train_arrays["image"]
  rng = np.random.default_rng(seed)
  rest = state.rest
  bs = min(run.config.batch_size * 4, len(images))
  for _ in range(batches):
    idx = rng.choice(len(images), bs, replace=False)
    rest = update(state.params, rest, jnp.asarray(images[idx]))
  return state.replace(rest=rest)


def final_evaluation(run: Run, state) -> dict:
  """Held-out bound (also as `eval/bound`), linear probe, kNN, raw-pixel baseline.

  With `config.probe.mlp` also the MLP probe; with
  `config.probe.random_baseline` the same probes on a randomly initialised
  model (seed `config.seed + 1000`, `random_state`) as `probe/random_*`.
  """
  pc = run.config.probe
  mlp = bool(pc.get("mlp", False))
  results = {f"eval/{k}": v for k, v in heldout_bound(run, state).items()}
  results["eval/bound"] = results.get(f"eval/{run.bound_key}", float("nan"))
  results.update({f"probe/{k}": v for k, v in
                  probe(run, state, knn=True, pixels=True, mlp=mlp).items()})
  if pc.get("random_baseline", False):
    rnd = random_state(run, run.config.seed + 1000)
    results.update({f"probe/random_{k}": v for k, v in
                    probe(run, rnd, mlp=mlp).items()})
  return results


def run_title(config) -> str:
  """A one-line description of the run (the curves' title)."""
  if objective_name(config) == "dim":
    d = config.dim
    return (f"{config.dataset}: DIM {d.estimator} alpha={d.alpha} "
            f"beta={d.beta} gamma={d.gamma}, {config.encoder.name}")
  return (f"{config.dataset} {config.get('views', '')}: {config.encoder.name} / "
          f"{config.critic.get('name', '')} / {config.get('bound', {}).get('name', '')}")


def format_results(results: dict, config) -> str:
  """The closing table: learned features vs raw pixels (and a random model)."""
  bound = config.get("bound", {}).get("name", "")
  if not bound and "dim" in config:
    bound = config.dim.get("estimator", "")
  lines = [
      f"held-out {bound} bound (test split, batch {config.batch_size}): "
      f"{results.get('eval/bound', float('nan')):.3f} nats",
      f"linear probe, learned features : {100 * results['probe/linear_acc']:.1f}%",
      f"linear probe, raw view pixels  : {100 * results['probe/pixel_linear_acc']:.1f}%",
  ]
  if "probe/knn_acc" in results:
    lines.append(f"{config.probe.knn_k}-NN, learned features        : "
                 f"{100 * results['probe/knn_acc']:.1f}%")
  named = [k[len("probe/"):] for k in results
           if k.startswith("probe/") and "/" in k[len("probe/"):]
           and not k.startswith("probe/random_")]
  if named:
    lines.append("probe   features  learned  random-init")
    for key in named:
      kind, name = key.split("/")
      rnd = results.get(f"probe/random_{key}")
      rnd_s = f"{100 * rnd:5.1f}%" if rnd is not None else "    -"
      lines.append(f"{kind[:-4]:7s} {name:9s} {100 * results['probe/' + key]:5.1f}%   "
                   f"{rnd_s}")
  return "\n".join(lines)
