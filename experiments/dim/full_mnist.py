"""Deep InfoMax on full MNIST: the G / L / prior and estimator tables (issues 12, 14).

One variant = one DIM setting trained for `--steps` steps with `--seeds`
seeds vmapped into one compiled program (`mi_jax.training.vmap_over_seeds`,
`make_multi_step`), then evaluated per seed with DIM's suite
(`mi_jax.evaluation.dim_suite.evaluate_encoder`): linear and reference-MLP
probes on conv / fc / Y, I(X; Y) (MINE), NDM, and the prior statistics
(JS(codes || U[0,1]^d) and a held-out discriminator's accuracy), beside the
same suite on randomly initialised encoders (`--random`).

  python experiments/dim/full_mnist.py --variant L_prior --steps 1000 \
      --out experiments/dim/results

Variants: see VARIANTS. Writes OUT/VARIANT.json (per-seed numbers, training
curves, settings, wall time); `tables.py` turns them into docs/dim.md's tables.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax import data
from mi_jax import encoders
from mi_jax.objectives import dim
from mi_jax.training import init_train_states, make_multi_step
from mi_jax.training import make_train_step, vmap_over_seeds

# (alpha, beta, gamma) of the paper: DIM(G) 1, 0, 1; DIM(L) 0, 1, 0.1.
# DIM(L+G) 0.5, 1, 0.1 is our choice (the paper gives no single setting).
VARIANTS = {
    "G": dict(alpha=1.0, beta=0.0, gamma=0.0),
    "G_prior": dict(alpha=1.0, beta=0.0, gamma=1.0),
    "L": dict(alpha=0.0, beta=1.0, gamma=0.0),
    "L_prior": dict(alpha=0.0, beta=1.0, gamma=0.1),
    "LG": dict(alpha=0.5, beta=1.0, gamma=0.0),
    "LG_prior": dict(alpha=0.5, beta=1.0, gamma=0.1),
    "L_prior_dv": dict(alpha=0.0, beta=1.0, gamma=0.1, estimator="dv"),
    "L_prior_nce": dict(alpha=0.0, beta=1.0, gamma=0.1, estimator="infonce"),
    "L_prior_minimax": dict(alpha=0.0, beta=1.0, gamma=0.1,
                            prior_encoder_loss="minimax", prior_gp=0.0),
    "L_prior_plain": dict(alpha=0.0, beta=1.0, gamma=0.1,
                          local_critic="plain"),
    "L_prior_occlusion": dict(alpha=0.0, beta=1.0, gamma=0.1, occlusion=14),
    "L_prior_b16": dict(alpha=0.0, beta=1.0, gamma=0.1, batch_size=16),
    "L_prior_b32": dict(alpha=0.0, beta=1.0, gamma=0.1, batch_size=32),
    "L_prior_b128": dict(alpha=0.0, beta=1.0, gamma=0.1, batch_size=128),
    # Negatives at a fixed number of images seen (25,600 = 400 x 64): the
    # step count is images_seen // batch_size, whatever --steps says.
    "L_prior_b16_n25600": dict(alpha=0.0, beta=1.0, gamma=0.1, batch_size=16,
                               images_seen=25600),
    "L_prior_b32_n25600": dict(alpha=0.0, beta=1.0, gamma=0.1, batch_size=32,
                               images_seen=25600),
    "L_prior_nce_b16_n25600": dict(alpha=0.0, beta=1.0, gamma=0.1,
                                   estimator="infonce", batch_size=16,
                                   images_seen=25600),
    # Prior matching alone (no MI term): can the min-max move the codes?
    "P": dict(alpha=0.0, beta=0.0, gamma=1.0),
    "P_minimax": dict(alpha=0.0, beta=0.0, gamma=1.0,
                      prior_encoder_loss="minimax", prior_gp=0.0),
}

# Reduced for a shared 2-core CPU (the paper's MNIST encoder is conv 64-128,
# fc 1024, Y 64, with 2048-unit critics): conv 16-32-64, fc 128, Y 64, local
# map 7x7x32 (M = 49), critic width 64; the prior discriminator as the paper.
ENCODER = dict(channels=(16, 32, 64), fc_dim=128, code_dim=64, local_layer=1,
               image_size=28, in_channels=1)
CRITIC = dict(local_embed_dim=64, global_conv_channels=(32, 16),
              global_hidden_dims=(128, 128), prior_hidden_dims=(1000, 200))


def build_model(settings, key):
  rngs = nnx.Rngs(key)
  encoder = encoders.make("dim_conv", rngs=rngs, **ENCODER)
  local_shape = nnx.eval_shape(
      lambda m, x: m.encode(x)["local"], encoder,
      jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)).shape[1:]
  return dim.make_dim_model(
      encoder, rngs=rngs, local_shape=tuple(local_shape),
      alpha=settings["alpha"], beta=settings["beta"], gamma=settings["gamma"],
      local_critic=settings.get("local_critic", "reference"),
      **{**CRITIC, **{k: settings[k] for k in ("prior_hidden_dims",)
                      if k in settings}})


def make_loss(settings):
  return dim.make_dim_loss(
      estimator=settings.get("estimator", "jsd"), alpha=settings["alpha"],
      beta=settings["beta"], gamma=settings["gamma"],
      prior_encoder_loss=settings.get("prior_encoder_loss", "non_saturating"),
      prior_gp=settings.get("prior_gp", 1.0),
      occlusion=settings.get("occlusion", 0),
      local_contrast=settings.get("local_contrast", "locations"))


def make_optimizer(lr, disc_lr=None):
  """Adam(lr) for every network, or Adam(disc_lr) for the prior
  discriminator and Adam(lr) for the rest (the reference gives every network
  its own Adam; under one Adam the prior loss's weight gamma does not change
  D's step size, so its learning rate is the only knob on D's speed)."""
  if disc_lr is None or disc_lr == lr:
    return optax.adam(lr)

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "disc" if "prior_disc" in jax.tree_util.keystr(path)
        else "rest", params)
  return optax.multi_transform(
      {"disc": optax.adam(disc_lr), "rest": optax.adam(lr)}, labels)


def train(settings, images_NxHxWxC, *, seeds, steps, chunk, lr, on_chunk=None):
  """Trains len(seeds) models in one vmapped program; returns states, curves.

  `settings["disc_lr"]` (optional): the prior discriminator's learning rate.
  `on_chunk(c, graphdef, states, curves)` (optional) runs after every chunk
  (`curves[-1]`: that chunk's training metrics) and returns a dict of
  per-seed lists merged into that chunk's curve entry.
  """
  tx = make_optimizer(lr, settings.get("disc_lr"))
  keys = jnp.stack([jax.random.key(s) for s in seeds])
  graphdef, states = init_train_states(
      lambda k: build_model(settings, k), tx, keys)
  step = make_train_step(graphdef, tx, make_loss(settings))
  step_s = vmap_over_seeds(step, batch_axis=0)  # one key per seed
  multi = jax.jit(make_multi_step(
      lambda st, b, k: step_s(st, b, jax.random.split(k, len(seeds))), chunk),
                  donate_argnums=0)
  batch_size = settings.get("batch_size", 64)
  n, num = len(images_NxHxWxC), max(steps, chunk) * batch_size
  idx_SxN = []
  for s in seeds:  # each seed its own stream of epoch permutations
    rng = np.random.default_rng(s)
    idx_SxN.append(np.concatenate(
        [rng.permutation(n) for _ in range(-(-num // n))])[:num])
  idx_SxCxTxB = np.stack(idx_SxN).reshape(len(seeds), -1, chunk, batch_size)
  curves, t0, cpu0 = [], time.time(), time.process_time()
  for c in range(steps // chunk):
    images_TxSxB = jnp.asarray(images_NxHxWxC[idx_SxCxTxB[:, c]]).swapaxes(0, 1)
    batch = {"image": images_TxSxB,
             "label": jnp.zeros(images_TxSxB.shape[:3], jnp.int32)}
    states, metrics = multi(states, batch, jax.random.fold_in(jax.random.key(0), c))
    m = jax.device_get(metrics)
    # per chunk: each seed's mean over the chunk's steps ([T, S] -> [S])
    curves.append({k: np.asarray(v).mean(axis=0).tolist() for k, v in m.items()
                   if np.asarray(v).dtype != bool})
    curves[-1]["cpu_seconds"] = time.process_time() - cpu0  # this process, cumulative
    curves[-1]["nonfinite_steps"] = np.sum(
        ~np.asarray(m["finite"], bool), axis=0).tolist()
    if on_chunk is not None:
      curves[-1].update(on_chunk(c, graphdef, states, curves))
    if not np.all(m["finite"]):
      print(f"non-finite step in chunk {c}", flush=True)
    print(f"chunk {c + 1}/{steps // chunk} ({time.time() - t0:.0f} s): " + ", ".join(
        f"{k}={np.mean(np.asarray(v)[-1]):.3f}" for k, v in m.items()
        if k in ("mi_local", "mi_global", "prior_acc", "y_norm",
                 "code_saturated")) + "".join(
            f", {k}={np.mean(v):.3f}" for k, v in curves[-1].items()
            if k.startswith("heldout_")), flush=True)
  return graphdef, states, curves, time.time() - t0


def run_variant(args, variant, train_set, test_set):
  """Trains (or loads, or randomly initialises) one variant and evaluates it."""
  settings = VARIANTS[variant]
  seeds = [int(s) for s in args.seeds.split(",")]
  images = np.asarray(train_set["image"], np.float32)
  name = "random" if args.random else variant
  steps = 0 if args.random or args.eval_only else settings.get(
      "images_seen", args.steps * settings.get("batch_size", 64)) // settings.get(
          "batch_size", 64)
  graphdef, states, curves, train_s = train(
      settings, images, seeds=seeds, steps=steps, chunk=args.chunk, lr=args.lr)
  if args.eval_only:  # the states saved by --train_only
    saved = np.load(os.path.join(args.out, f"{variant}.states.npz"))
    treedef = jax.tree.structure((states.params, states.rest))
    params, rest = jax.tree.unflatten(
        treedef, [jnp.asarray(saved[f"arr_{i}"]) for i in range(len(saved.files))])
    states = states.replace(params=params, rest=rest)
    with open(os.path.join(args.out, f"{variant}.train.json")) as f:
      trained = json.load(f)
    steps, curves, train_s = trained["steps"], trained["curves"], trained["train_seconds"]
  else:
    print(f"trained {steps} steps x {len(seeds)} seeds in {train_s:.0f} s", flush=True)
    if args.time_only:
      return
    os.makedirs(args.out, exist_ok=True)
    leaves = jax.tree.leaves(jax.device_get((states.params, states.rest)))
    np.savez(os.path.join(args.out, f"{name}.states.npz"), *leaves)
    with open(os.path.join(args.out, f"{name}.train.json"), "w") as f:
      json.dump({"variant": name, "settings": settings, "seeds": seeds,
                 "steps": steps, "lr": args.lr, "encoder": ENCODER,
                 "critic": CRITIC, "train_seconds": train_s,
                 "curves": curves}, f)
  if args.train_only:
    return
  from mi_jax.evaluation import dim_suite  # pylint: disable=g-import-not-at-top
  sub = np.random.default_rng(1234).permutation(len(images))[:args.probe_train]
  results, t0, cpu0 = [], time.time(), time.process_time()
  for i, seed in enumerate(seeds):
    state = jax.tree.map(lambda x, i=i: x[i], states)
    model = nnx.merge(graphdef, state.params, state.rest)
    if args.random:
      dim_suite.calibrate_batch_norm(model.encoder, images, seed=seed)
    res = dim_suite.evaluate_encoder(
        model.encoder, images[sub], train_set["label"][sub],
        test_set["image"], test_set["label"], seed=seed,
        mlp_epochs=args.mlp_epochs, estimator_steps=args.estimator_steps,
        mlp_features=tuple(f for f in args.mlp_features.split(",") if f))
    results.append(res)
    print(f"{name} seed {seed} ({time.time() - t0:.0f} s): {json.dumps(res)}",
          flush=True)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, f"{name}.json"), "w") as f:
    json.dump({"variant": name, "settings": settings, "seeds": seeds,
               "steps": steps, "lr": args.lr, "encoder": ENCODER,
               "critic": CRITIC, "probe_train": args.probe_train,
               "mlp_epochs": args.mlp_epochs, "train_seconds": train_s,
               "estimator_steps": args.estimator_steps,
               "mlp_features": args.mlp_features,
               "eval_seconds": time.time() - t0,
               "eval_cpu_seconds": time.process_time() - cpu0,
               "train_cpu_seconds": (curves[-1].get("cpu_seconds")
                                     if curves else None),
               "results": results,
               "curves": curves}, f)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--variant", required=True,
                 help="one of VARIANTS, or several joined by commas (with "
                 "--eval_only: evaluated in one process, each as soon as its "
                 "states exist)")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--chunk", type=int, default=50)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--probe_train", type=int, default=10000,
                 help="training images for the probes (first N of a fixed "
                 "permutation of the 60k)")
  p.add_argument("--mlp_epochs", type=int, default=30)
  p.add_argument("--random", action="store_true",
                 help="evaluate randomly initialised encoders instead of training")
  p.add_argument("--out", default="experiments/dim/results")
  p.add_argument("--time_only", action="store_true")
  p.add_argument("--eval_only", action="store_true",
                 help="evaluate OUT/VARIANT.states.npz (from --train_only)")
  p.add_argument("--estimator_steps", type=int, default=1000)
  p.add_argument("--mlp_features", default="conv,fc,y",
                 help="feature sets for the reference MLP probe")
  p.add_argument("--train_only", action="store_true",
                 help="train and save OUT/VARIANT.states.npz; evaluate later")
  args = p.parse_args(argv)
  variants = args.variant.split(",")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    p.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
  train_set = data.load_arrays("mnist", "train")
  test_set = data.load_arrays("mnist", "test")
  for variant in variants:
    while args.eval_only and not os.path.exists(
        os.path.join(args.out, f"{variant}.train.json")):
      time.sleep(20)
    run_variant(args, variant, train_set, test_set)


if __name__ == "__main__":
  main()
