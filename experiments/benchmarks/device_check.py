"""Accelerator check: speed, matmul-peak fraction, seeds, bf16 and memory of three train steps.

Steps (synthetic images; speed does not depend on pixels):
  main    Tschannen et al. §3.2: MLPs 392-300-300-100 on 28x28 halves,
          bilinear critic, InfoNCE, Adam
  dim     DIM(L) of experiments/configs/dim_mnist5k.py (conv 32-64-128,
          InfoNCE over codes + prior term), 28x28x1
  resnet  multiview with two ResNet-18 encoders (BasicBlocks, BatchNorm) on
          24x24 random crops of 32x32x3 images, bilinear critic, InfoNCE
For each, at every batch size in --batches (default 128 and 1,024):
  steps/s (f32), achieved FLOP/s = XLA's cost_analysis() FLOPs of the
  compiled step x steps/s, as a fraction of the matmul peak the script
  measured itself (the best of square f32 / bf16 matmuls, --peak-n), bf16
  steps/s (compute_dtype=bfloat16; float32 bounds and master weights) and
  peak device memory (`device.memory_stats()["peak_bytes_in_use"]` where the
  backend reports it, else XLA's compiled buffer sizes); then 20 seeds
  vmapped (one program, per-seed batches) vs the 20 runs one after the other,
  at the first batch size.

  bash experiments/benchmarks/device_check.sh            # one GPU, < 5 min
  bash experiments/benchmarks/device_check.sh --quick    # CPU smoke run
"""
import argparse
import math
import os
import time

import jax  # pylint: disable=g-import-not-at-top
import jax.extend  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import optax
from flax import nnx

from mi_jax import critics, encoders, training, views
from mi_jax.objectives import dim, multiview


def _multiview(make_encoder, dim_out, view_fn):
  def model_fn(key):
    rngs = nnx.Rngs(key)
    return multiview.MultiviewModel(make_encoder(rngs), make_encoder(rngs),
                                    critics.Bilinear(dim_out, dim_out,
                                                     rngs=rngs))
  loss_fn = multiview.make_multiview_loss(views=view_fn, bound="infonce")
  return model_fn, loss_fn


def job(name, quick=False):
  """(model_fn(key), loss_fn, image shape, tx) of a benchmark step.

  `quick`: the ResNet shrinks to one block per stage, widths 8..64 (so the
  CPU smoke run compiles in seconds); the other steps keep their sizes.
  """
  if name == "main":
    model_fn, loss_fn = _multiview(
        lambda rngs: encoders.MLP(392, (300, 300), 100, rngs=rngs), 100,
        views.make_views("top_bottom", flatten=True))
    return model_fn, loss_fn, (28, 28, 1), optax.adam(1e-4)
  if name == "resnet":
    model_fn, loss_fn = _multiview(
        lambda rngs: encoders.ResNet(
            3, (1, 1, 1, 1) if quick else (2, 2, 2, 2),
            (8, 16, 32, 64) if quick else (64, 128, 256, 512), rngs=rngs),
        64 if quick else 512,
        views.make_views("crops", size=24))
    return model_fn, loss_fn, (32, 32, 3), optax.adam(1e-3)

  def model_fn(key):
    enc = encoders.make("dim_conv", in_channels=1, channels=(32, 64, 128),
                        fc_dim=256, code_dim=64, local_layer=1, image_size=28,
                        rngs=nnx.Rngs(key))
    local_shape = nnx.eval_shape(
        lambda m, x: m.encode(x)["local"], enc,
        jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)).shape[1:]
    return dim.make_dim_model(
        enc, rngs=nnx.Rngs(key), local_shape=tuple(local_shape), alpha=0.0,
        beta=1.0, gamma=0.1, local_embed_dim=256, local_hidden_dim=256,
        global_conv_channels=(64, 32), global_hidden_dims=(256, 256),
        prior_hidden_dims=(256, 64))
  loss_fn = dim.make_dim_loss(estimator="infonce", alpha=0.0, beta=1.0,
                              gamma=0.1, local_contrast="codes")
  return model_fn, loss_fn, (28, 28, 1), optax.adam(1e-3)


REPEATS = 3  # --repeats: the best of this many timings (as the matmul peak)


def _rate(run, steps):
  """Steps/s: the best of REPEATS timings of `steps` steps (like the peak, so
  that on a shared machine both sides are measured the same way)."""
  run(1)                                     # warm-up (after compile)
  best = 0.0
  for _ in range(REPEATS):
    t0 = time.perf_counter()
    run(steps)
    best = max(best, steps / (time.perf_counter() - t0))
  return best


def _peak_bytes(compiled):
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"], "device peak"
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes
          + m.temp_size_in_bytes), "XLA buffers"


def matmul_peak(n, reps=5):
  """Best FLOP/s of an n x n @ n x n matmul over f32 and bf16 (2 n^3 FLOPs)."""
  best = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
      t0 = time.perf_counter()
      f(a).block_until_ready()
      times.append(time.perf_counter() - t0)
    best[jnp.dtype(dtype).name] = 2 * n**3 / min(times)
  return best


def _dots(jaxpr):
  """Every `dot_general` equation of a (closed) jaxpr, sub-jaxprs included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _dots(sub)


def matmul_ceiling(name, batch, steps, quick=False):
  """The step's own matmuls timed one by one: (their FLOPs, seconds, count).

  Every `dot_general` of the traced train step (forward and backward) is
  jitted alone with its shapes and dimension numbers and timed (the best of
  REPEATS runs of `steps` calls). Their summed FLOPs over their summed
  times is the rate the step could reach if it did nothing but these
  matmuls, each as fast as it runs in isolation: the step's own ceiling,
  beside the square-matmul peak.
  """
  model_fn, loss_fn, shape, tx = job(name, quick)
  graphdef, state = training.init_train_state(model_fn(jax.random.key(0)), tx)
  step = training.make_train_step(graphdef, tx, loss_fn)
  images = {"image": jax.ShapeDtypeStruct((batch, *shape), jnp.float32)}
  closed = jax.make_jaxpr(step)(state, images, jax.random.key(0))
  total_flops, total_s, count = 0.0, 0.0, 0
  for eqn in _dots(closed.jaxpr):
    lhs, rhs = (v.aval for v in eqn.invars)
    (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
    contract = math.prod(lhs.shape[d] for d in lc)
    batch_n = math.prod(lhs.shape[d] for d in lb)
    free = (math.prod(lhs.shape) // (contract * batch_n)) * (
        math.prod(rhs.shape) // (contract * batch_n))
    flops = 2.0 * batch_n * contract * free
    a = jnp.ones(lhs.shape, lhs.dtype)
    b = jnp.ones(rhs.shape, rhs.dtype)
    f = jax.jit(lambda x, y, p=eqn.params: jax.lax.dot_general(
        x, y, p["dimension_numbers"], precision=p["precision"],
        preferred_element_type=p["preferred_element_type"]))
    box = {}

    def run(n, f=f, a=a, b=b, box=box):
      for _ in range(n):
        box["o"] = f(a, b)
      box["o"].block_until_ready()

    total_s += 1.0 / _rate(run, steps)
    total_flops += flops
    count += 1
  return total_flops, total_s, count


def step_rate(name, batch, dtype, steps, quick=False):
  """(steps/s, FLOPs per step, peak bytes, how measured) of one job."""
  model_fn, loss_fn, shape, tx = job(name, quick)
  graphdef, state = training.init_train_state(model_fn(jax.random.key(0)), tx)
  step = jax.jit(training.make_train_step(graphdef, tx, loss_fn,
                                          compute_dtype=dtype),
                 donate_argnums=0)
  images = {"image": jax.random.uniform(jax.random.key(1), (batch, *shape))}
  key = jax.random.key(2)
  compiled = step.lower(state, images, key).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  box = {"s": state}

  def run(n):
    s = box["s"]
    for _ in range(n):
      s, m = compiled(s, images, key)
    box["s"] = s
    m["loss"].block_until_ready()

  rate = _rate(run, steps)
  peak, how = _peak_bytes(compiled)
  return rate, float(cost.get("flops", 0.0)), peak, how


def seeds_ratio(name, batch, num_seeds, steps, quick=False):
  """Seed-steps/s of `num_seeds` vmapped seeds over that of sequential runs."""
  model_fn, loss_fn, shape, tx = job(name, quick)
  keys = jax.random.split(jax.random.key(3), num_seeds)
  graphdef, states = training.init_train_states(model_fn, tx, keys)
  step = training.make_train_step(graphdef, tx, loss_fn)
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=0),
                  donate_argnums=0)
  jstep = jax.jit(step, donate_argnums=0)
  images = {"image": jax.random.uniform(jax.random.key(4),
                                        (num_seeds, batch, *shape))}
  box = {"v": states,
         "s": [training.unstack_state(states, i) for i in range(num_seeds)]}

  def run_v(n):
    s = box["v"]
    for _ in range(n):
      s, m = vstep(s, images, keys)
    box["v"] = s
    m["loss"].block_until_ready()

  def run_s(n):
    for i in range(num_seeds):
      s = box["s"][i]
      batch_i = {"image": images["image"][i]}
      for _ in range(n):
        s, m = jstep(s, batch_i, keys[i])
      box["s"][i] = s
    m["loss"].block_until_ready()

  return _rate(run_v, steps) / _rate(run_s, steps)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="tiny sizes, for a CPU smoke run (the test)")
  p.add_argument("--jobs", default="main,dim,resnet")
  p.add_argument("--batches", default=None, help="e.g. 128,1024")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--seeds", type=int, default=None)
  p.add_argument("--peak-n", type=int, default=None)
  p.add_argument("--ceiling", action="store_true",
                 help="also time the step's own matmuls one by one (the "
                 "fraction of peak the step could reach)")
  p.add_argument("--repeats", type=int, default=3,
                 help="steps/s is the best of this many timings")
  args = p.parse_args(argv)
  global REPEATS
  REPEATS = args.repeats
  q = args.quick
  batches = [int(b) for b in (args.batches or ("8,16" if q else "128,1024")
                              ).split(",")]
  steps = args.steps or (2 if q else 20)
  seeds = args.seeds or (2 if q else 20)
  dev = jax.devices()[0]
  t_start = time.perf_counter()
  print(f"device: {dev.platform} {dev.device_kind} x {jax.device_count()}; "
        f"jax {jax.__version__}", flush=True)
  peaks = matmul_peak(args.peak_n or (256 if q else 8192))
  peak = max(peaks.values())
  print("matmul peak measured: " + ", ".join(
      f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in peaks.items()), flush=True)
  for name in args.jobs.split(","):
    for b in batches:
      r32, flops, mem, how = step_rate(name, b, None, steps, q)
      r16, _, mem16, _ = step_rate(name, b, jnp.bfloat16, steps, q)
      print(f"{name:6s} batch {b:5d}: f32 {r32:8.1f} steps/s, "
            f"{flops / 1e9:8.2f} GFLOP/step, {flops * r32 / peak:6.1%} of "
            f"matmul peak; bf16 {r16:8.1f} steps/s ({r16 / r32:.2f}x f32); "
            f"memory f32 {mem / 2**20:.0f} MiB, bf16 {mem16 / 2**20:.0f} MiB "
            f"({how})", flush=True)
      if args.ceiling:
        mflops, msec, count = matmul_ceiling(name, b, steps, q)
        print(f"{name:6s} batch {b:5d}: its {count} matmuls alone: "
              f"{mflops / 1e9:.2f} GFLOP in {msec * 1e3:.2f} ms = "
              f"{mflops / msec / peak:6.1%} of matmul peak (the step's "
              f"ceiling); step {flops * r32 / peak:6.1%} = "
              f"{flops * r32 / (mflops / msec):6.1%} of that ceiling",
              flush=True)
    ratio = seeds_ratio(name, batches[0], seeds, steps, q)
    print(f"{name:6s} {seeds} seeds vmapped / sequential (seed-steps/s, "
          f"batch {batches[0]}): {ratio:.2f}x", flush=True)
  print(f"device check done in {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
  main()
