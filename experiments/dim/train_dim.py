"""Deep InfoMax runner: train DIM from a config, probe conv / fc / Y features.

  python experiments/dim/train_dim.py --config experiments/configs/dim_mnist5k.py \
      --workdir /tmp/mi_jax/dim_mnist5k [--config.KEY=VALUE ...]

The generic trainer (`mi_jax.training.loop`) builds models from objectives
registered by name in `mi_jax.training.experiment`; DIM is not registered
there (its configs keep `config.objective` as a subtree of DIM weights), so
this is a short loop on the library's pieces: `init_train_state`, `make_train_step`
with `mi_jax.objectives.dim.make_dim_loss` (one loss, one Adam; the prior
term's min-max is done by gradient reversal), `jax.jit` on one device or
`mi_jax.training.sharding.shard_train_step` over a mesh of all devices,
`BatchIterator`, Orbax checkpoints (rerunning the command resumes) and
`mi_jax.evaluation.linear_probe` / `mlp_probe` at the end. Results go to
`WORKDIR/summary.json` and are printed as a table.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from mi_jax import data as data_lib
from mi_jax import encoders
from mi_jax import evaluation
from mi_jax.objectives import dim
from mi_jax.training import config as config_lib
from mi_jax.training.state import init_train_state, merge_model
from mi_jax.training.step import make_train_step


def _kwargs(node) -> dict:
  node = node.to_dict() if isinstance(node, ml_collections.ConfigDict) else node
  return {k: tuple(v) if isinstance(v, list) else v for k, v in node.items()}


@dataclasses.dataclass
class Run:
  """What a config builds: data, graphdef + state, jitted functions."""
  config: ml_collections.ConfigDict
  train_data: Any           # arrays dict or random-access source
  graphdef: Any
  state: Any
  train_step: Callable
  features: Callable        # (state, images) -> {"conv", "fc", "y"}
  mesh: Any


def build_model(config, *, seed: int) -> dim.DIMModel:
  """Encoder from the registry + the DIM critics whose weights are non-zero."""
  rngs = nnx.Rngs(seed)
  enc_kwargs = _kwargs(config.encoder.kwargs)
  encoder = encoders.make(config.encoder.name, rngs=rngs, **enc_kwargs)
  size = config.crop_size or enc_kwargs.get("image_size", 32)
  in_ch = enc_kwargs.get("in_channels", 3)
  local_shape = nnx.eval_shape(
      lambda m, x: m.encode(x)["local"], encoder,
      jax.ShapeDtypeStruct((1, size, size, in_ch), jnp.float32)).shape[1:]
  obj, cr = config.objective, config.critic
  return dim.make_dim_model(
      encoder, rngs=rngs, local_shape=tuple(local_shape),
      alpha=obj.alpha, beta=obj.beta, gamma=obj.gamma,
      local_embed_dim=cr.local_embed_dim, local_hidden_dim=cr.local_hidden_dim,
      local_score_scale=cr.get("local_score_scale", 1.0),
      global_conv_channels=tuple(cr.global_conv_channels),
      global_hidden_dims=tuple(cr.global_hidden_dims),
      prior_hidden_dims=tuple(cr.prior_hidden_dims))


def _encoder_in_channels(config, train_data) -> ml_collections.ConfigDict:
  """Fills encoder.kwargs.in_channels from the data when the config omits it."""
  if "in_channels" not in config.encoder.kwargs:
    sample = (train_data["image"][:1] if isinstance(train_data, dict)
              else data_lib.to_model_batch([train_data[0]])["image"])
    with config.encoder.kwargs.unlocked():
      config.encoder.kwargs.in_channels = int(sample.shape[-1])
  return config


def load_train_data(config):
  """Arrays for small data sets; a random-access source when `streaming`."""
  if config.get("streaming", False):
    return data_lib.data_source(config.dataset, config.train_split,
                                data_dir=config.data_dir)
  return data_lib.load_arrays(config.dataset, config.train_split,
                              data_dir=config.data_dir)


def build_run(config, train_data=None) -> Run:
  """Model, Adam, DIM loss and the jitted (or mesh-sharded) train step."""
  train_data = load_train_data(config) if train_data is None else train_data
  config = _encoder_in_channels(config, train_data)
  # Built under jit: one compiled initialiser instead of one per eager op.
  model = nnx.jit(lambda: build_model(config, seed=config.seed))()
  tx = optax.adam(config.lr)
  graphdef, state = init_train_state(model, tx)
  obj = config.objective
  loss_fn = dim.make_dim_loss(
      estimator=obj.estimator, alpha=obj.alpha, beta=obj.beta,
      gamma=obj.gamma, crop_size=config.crop_size, flip=config.flip,
      prior_encoder_loss=obj.get("prior_encoder_loss", "minimax"),
      local_contrast=obj.get("local_contrast", "locations"))
  plain_step = make_train_step(graphdef, tx, loss_fn)

  def step(state, batch, base_key):
    key = jax.random.fold_in(base_key, state.step + 1)
    return plain_step(state, batch, key)

  mesh = None
  if config.use_mesh and jax.device_count() > 1:
    from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
    if config.batch_size % jax.device_count():
      raise ValueError(
          f"config.batch_size={config.batch_size} must divide over "
          f"{jax.device_count()} devices (or --config.use_mesh=false)")
    mesh = sharding.make_mesh()
    train_step = sharding.shard_train_step(step, mesh, donate_state=True)
    state = sharding.replicate(state, mesh)
  else:
    train_step = jax.jit(step, donate_argnums=0)

  def features(state, images):
    model = merge_model(graphdef, state.params, state.rest)
    model.eval()
    feats = model.encoder.encode(dim.center_crop(images, config.crop_size))
    return {k: feats[k].reshape(len(images), -1) for k in ("conv", "fc", "y")}

  return Run(config=config, train_data=train_data, graphdef=graphdef,
             state=state, train_step=train_step, features=jax.jit(features),
             mesh=mesh)


def _to_step_batch(run: Run, batch: dict) -> dict:
  batch = {k: np.asarray(v) for k, v in batch.items()}
  if run.mesh is None or jax.process_count() == 1:
    return batch
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  return sharding.host_local_to_global(batch, run.mesh)


def train(run: Run, workdir: str | None = None, *, log=print):
  """Runs `config.steps` steps (resuming from `workdir`).

  Returns:
    (state, history), history = the logged metrics rows.
  """
  config = run.config
  iterator = data_lib.BatchIterator(run.train_data, config.batch_size,
                                    seed=config.seed)
  state, start, ckpt = run.state, 0, None
  if workdir:
    from mi_jax.training import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=2, async_save=False)
    step0, restored, it_state = ckpt.restore_latest(
        ckpt_lib.abstract_like(state))
    if step0 is not None:
      state, start = restored, step0
      iterator.set_state(it_state)
      log(f"resumed at step {start}")
  base_key = jax.random.key(config.seed)
  history, t0 = [], time.time()
  for step in range(start + 1, config.steps + 1):
    state, metrics = run.train_step(state, _to_step_batch(run, next(iterator)),
                                    base_key)
    if step % config.log_every == 0 or step == config.steps:
      row = {k: float(v) for k, v in jax.device_get(metrics).items()}
      row["step"] = step
      history.append(row)
      if not row["finite"]:
        raise FloatingPointError(f"non-finite loss at step {step}; lower lr")
      shown = " ".join(f"{k}={row[k]:.4f}" for k in
                       ("loss", "mi_local", "mi_global", "prior_d", "prior_acc")
                       if k in row)
      log(f"step {step}/{config.steps} {shown} "
          f"({(step - start) / (time.time() - t0):.1f} steps/s)")
    if ckpt is not None and (step % config.checkpoint_every == 0
                             or step == config.steps):
      ckpt.save(step, state, iterator.get_state())
  if ckpt is not None:
    ckpt.close()
  return state, history


def calibrated_random_state(run: Run, images: np.ndarray, *, seed: int,
                            batches: int = 20):
  """A randomly initialised model (seed `seed`) whose BatchNorm running stats
  are estimated on `images` (train-mode forward passes, no gradient step).

  The fair "random encoder" baseline: an untrained net, but with its
  normalisation fitted to the data as a trained one's is.
  """
  model = nnx.jit(lambda: build_model(run.config, seed=seed))()
  _, state = init_train_state(model, optax.identity())
  graphdef = run.graphdef

  @jax.jit
  def update(rest, params, x):
    model = merge_model(graphdef, params, rest)
    model.train()
    model.encoder.encode(dim.center_crop(x, run.config.crop_size))
    return nnx.split(model, nnx.Param, ...)[2]

  rng = np.random.default_rng(seed)
  rest = state.rest
  bs = min(run.config.batch_size * 4, len(images))
  for _ in range(batches):
    idx = rng.choice(len(images), bs, replace=False)
    rest = update(rest, state.params, jnp.asarray(images[idx]))
  return state.replace(rest=rest)


def extract(run: Run, state, images, chunk: int = 500) -> dict:
  """{"conv", "fc", "y"} features of `images` as NumPy, in chunks."""
  outs = [jax.device_get(run.features(state, jnp.asarray(images[i:i + chunk])))
          for i in range(0, len(images), chunk)]
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def probe_all(run: Run, state, train_arrays, test_arrays, *,
              layers=None, probes=None) -> dict:
  """Test accuracy of each probe on each feature layer, {"linear/y": acc}."""
  ec = run.config.eval
  layers, probes = layers or ec.layers, probes or ec.probes
  f_tr = extract(run, state, train_arrays["image"])
  f_te = extract(run, state, test_arrays["image"])
  out = {}
  for layer in layers:
    for probe in probes:
      if probe == "linear":
        acc = evaluation.linear_probe(
            f_tr[layer], train_arrays["label"], f_te[layer],
            test_arrays["label"], C=ec.linear_C, steps=ec.linear_steps)
      elif probe == "mlp":
        acc = evaluation.mlp_probe(
            f_tr[layer], train_arrays["label"], f_te[layer],
            test_arrays["label"], hidden=ec.mlp_hidden, dropout=ec.mlp_dropout,
            epochs=ec.mlp_epochs, seed=run.config.seed)
      else:
        raise ValueError(f"unknown probe {probe!r}: use 'linear' or 'mlp'")
      out[f"{probe}/{layer}"] = float(acc)
  return out


def load_probe_arrays(config):
  """Labelled train / test arrays for the probes (optionally subsampled)."""
  tr = data_lib.load_arrays(config.dataset, config.probe_train_split,
                            data_dir=config.data_dir)
  te = data_lib.load_arrays(config.dataset, config.probe_test_split,
                            data_dir=config.data_dir)
  n = config.eval.max_probe_train
  if n and n < len(tr["label"]):
    idx = np.random.default_rng(0).choice(len(tr["label"]), n, replace=False)
    tr = {k: v[idx] for k, v in tr.items()}
  return tr, te


def format_table(results: dict) -> str:
  """Rows: probe x layer; columns: DIM, random encoder (when measured)."""
  lines = ["probe   layer  DIM     random-init"]
  for key, acc in results["dim"].items():
    probe, layer = key.split("/")
    rnd = results.get("random", {}).get(key)
    rnd_s = f"{100 * rnd:5.1f}%" if rnd is not None else "  -"
    lines.append(f"{probe:7s} {layer:6s} {100 * acc:5.1f}%  {rnd_s}")
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", default=None)
  args, overrides = parser.parse_known_args(argv)
  config = config_lib.apply_overrides(config_lib.load_config(args.config),
                                      overrides)
  if args.workdir:
    config_lib.save_config(config, args.workdir)
  t0 = time.time()
  run = build_run(config)
  state, history = train(run, args.workdir)
  train_s = time.time() - t0
  tr, te = load_probe_arrays(config)
  results = {"dim": probe_all(run, state, tr, te)}
  if config.eval.random_baseline:
    rnd = calibrated_random_state(run, tr["image"], seed=config.seed + 1000)
    results["random"] = probe_all(run, rnd, tr, te)
  results.update(train_s=train_s, steps=config.steps,
                 final=history[-1] if history else {})
  print(format_table(results))
  if args.workdir:
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
