"""Input speed: steps/s with the real input path vs with a batch already on the device.

For two steps on the embedded MNIST-5k train split (4,000 x 28x28x1):
  main  the main job's step (Tschannen et al. §3.2: two MLPs 392-300-300-100
        on image halves, bilinear critic, InfoNCE, Adam), batch 128;
  dim   the DIM(L) step of experiments/configs/dim_mnist5k.py (conv 32-64-128
        encoder, InfoNCE over codes, prior term), batch 64;
it measures, interleaved over --rounds rounds (medians of per-round ratios):
  resident   `make_multi_step(step, T)` on a [T, B, ...] batch already on
             the device (the ceiling: no input work at all);
  gather     `feed.make_gather_multi_step(step, T)`: the data set on the
             device, the step gathers its batches from host-drawn indices
             (`feed.DeviceData.next_indices`, the BatchIterator permutation);
  fixed      one jitted call per step on a batch already on the device;
  prefetch   one call per step fed by `feed.Prefetcher` (a background
             thread reads + device_puts the next BatchIterator batches);
  host       one call per step fed by the BatchIterator directly (the old
             path: read + copy inside the loop, no overlap).
Targets (issue 13): gather / resident >= 0.95 and prefetch / fixed >= 0.95.

Run (CPU, one device):
  python experiments/benchmarks/input_speed.py --rounds 5 --steps 40 --scan 10
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import optax
from flax import nnx

from mi_jax import critics, encoders, training, views
from mi_jax.data import load_arrays
from mi_jax.data.iterator import BatchIterator
from mi_jax.objectives import dim, multiview
from mi_jax.training import feed


def main_job():
  """(state, step, batch size) of the §3.2 step."""
  rngs = nnx.Rngs(0)
  model = multiview.MultiviewModel(
      encoders.MLP(392, (300, 300), 100, rngs=rngs),
      encoders.MLP(392, (300, 300), 100, rngs=rngs),
      critics.Bilinear(100, 100, rngs=rngs))
  tx = optax.adam(1e-4)
  graphdef, state = training.init_train_state(model, tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  return state, training.make_train_step(graphdef, tx, loss_fn), 128


def dim_job():
  """(state, step, batch size) of the dim_mnist5k config's step."""
  enc = encoders.make("dim_conv", in_channels=1, channels=(32, 64, 128),
                      fc_dim=256, code_dim=64, local_layer=1, image_size=28,
                      rngs=nnx.Rngs(0))
  local_shape = nnx.eval_shape(
      lambda m, x: m.encode(x)["local"], enc,
      jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)).shape[1:]
  model = dim.make_dim_model(
      enc, rngs=nnx.Rngs(1), local_shape=tuple(local_shape), alpha=0.0,
      beta=1.0, gamma=0.1, local_embed_dim=256, local_hidden_dim=256,
      global_conv_channels=(64, 32), global_hidden_dims=(256, 256),
      prior_hidden_dims=(256, 64))
  tx = optax.adam(1e-3)
  graphdef, state = training.init_train_state(model, tx)
  loss_fn = dim.make_dim_loss(estimator="infonce", alpha=0.0, beta=1.0,
                              gamma=0.1, local_contrast="codes")
  return state, training.make_train_step(graphdef, tx, loss_fn), 64


def runners(job, data, n_scan):
  """name -> run(n_steps) for one job; each keeps its own state."""
  state, step, b = job()
  copy = lambda: jax.tree.map(jnp.copy, state)
  key = jax.random.key(0)
  jstep = jax.jit(step, donate_argnums=0)
  jmulti = jax.jit(training.make_multi_step(step, n_scan), donate_argnums=0)
  jgather = jax.jit(feed.make_gather_multi_step(step, n_scan),
                    donate_argnums=0)
  images = {"image": data["image"]}
  it = lambda: BatchIterator(images, b, seed=0, shard_index=0, shard_count=1)
  fixed_batch = jax.device_put(next(it()))
  resident = jax.device_put(
      {"image": jnp.stack([next(it())["image"] for _ in range(n_scan)])})
  dev = feed.DeviceData(images, it())
  pre = feed.Prefetcher(it(), jax.device_put, depth=2)
  host = it()
  box = {k: copy() for k in ("resident", "gather", "fixed", "prefetch",
                              "host")}

  def loop(name, n, one):
    s = box[name]
    for _ in range(n):
      s, m = one(s)
    box[name] = s
    jax.block_until_ready(m["loss"])

  return {
      "resident": lambda n: loop(
          "resident", n // n_scan, lambda s: jmulti(s, resident, key)),
      "gather": lambda n: loop(
          "gather", n // n_scan,
          lambda s: jgather(s, dev.arrays, dev.next_indices(n_scan), key)),
      "fixed": lambda n: loop("fixed", n, lambda s: jstep(s, fixed_batch,
                                                          key)),
      "prefetch": lambda n: loop("prefetch", n,
                                 lambda s: jstep(s, next(pre), key)),
      "host": lambda n: loop("host", n, lambda s: jstep(s, next(host), key)),
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--scan", type=int, default=10)
  p.add_argument("--jobs", default="main,dim")
  args = p.parse_args()
  n = args.steps - args.steps % args.scan
  data = load_arrays("mnist5k", "train")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}); "
        f"{n} steps x {args.rounds} rounds, scan {args.scan}", flush=True)
  for name in args.jobs.split(","):
    run = runners({"main": main_job, "dim": dim_job}[name], data, args.scan)
    for fn in run.values():
      fn(args.scan)                      # compile + warm up
    rates = {k: [] for k in run}
    for _ in range(args.rounds):
      for k, fn in run.items():
        t0 = time.perf_counter()
        fn(n)
        rates[k].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{name}: median steps/s " + ", ".join(
        f"{k} {v:.1f}" for k, v in med.items()))
    for a, b in (("gather", "resident"), ("prefetch", "fixed"),
                 ("host", "fixed")):
      r = statistics.median(x / y for x, y in zip(rates[a], rates[b]))
      target = "" if a == "host" else (
          " (target >= 0.95: " + ("met" if r >= 0.95 else "MISSED") + ")")
      print(f"  {name} {a} / {b}: {r:.2f}x{target}", flush=True)


if __name__ == "__main__":
  main()
