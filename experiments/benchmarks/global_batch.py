"""Benchmark: InfoNCE over a huge global batch on a mesh, blocked (memory-linear) vs dense.

Forward + backward of InfoNCE on K paired d-dim embeddings split over the 8
fake CPU devices of one process (`--xla_force_host_platform_device_count=8`),
jitted with the rows sharded over the mesh axis `data` and traced inside
`jax.set_mesh`, so `mi_jax.bounds.blocked.infonce` takes its `shard_map` path:
each device all-gathers zb (the negatives of the whole global batch) and
reduces only its own K/8 rows, in blocks of `--block` rows.

Prints, per device (XLA's buffer assignment of the compiled SPMD program,
`compiled.memory_analysis()`: arguments + outputs + temporaries):
  1. at K = --k (65,536) and d = --d (128): the blocked path's memory (compiled
     and run once, timed) against the dense path's need (compiled only: it
     does not fit in this machine's memory);
  2. at K = --time-k (8,192), where the dense path fits: the median step time
     of both (--repeats runs after a warm-up), and their values.

Run (CPU; the K = 65,536 run does ~4.4 TFLOP, minutes on a busy 2-core VM):
  python experiments/benchmarks/global_batch.py
  python experiments/benchmarks/global_batch.py --k 16384 --time-k 4096   # quick
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from mi_jax import bounds
from mi_jax.training import sharding


def _inputs(k, d, mesh):
  ka, kb = jax.random.split(jax.random.key(0))
  rows = NamedSharding(mesh, P("data"))
  make = jax.jit(lambda: (
      jax.random.normal(ka, (k, d)) / d**0.5,
      jax.random.normal(kb, (k, d)) / d**0.5), out_shardings=(rows, rows))
  za, zb = make()
  return za, 0.9 * za + 0.1 * zb


def _compiled(path, k, d, block, mesh):
  rows = NamedSharding(mesh, P("data"))
  if path == "blocked":
    fn = lambda a, b: bounds.blocked.infonce(a, b, block_size=block)
  else:
    fn = lambda a, b: bounds.infonce(a @ b.T)
  step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)),
                 in_shardings=(rows, rows))
  spec = jax.ShapeDtypeStruct((k, d), jnp.float32, sharding=rows)
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = step.lower(spec, spec).compile()
  mem = compiled.memory_analysis()
  per_device = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                + mem.temp_size_in_bytes)
  return compiled, per_device, time.perf_counter() - t0


def _time(compiled, za, zb, repeats):
  jax.block_until_ready(compiled(za, zb))          # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    value, _ = jax.block_until_ready(compiled(za, zb))
    times.append(time.perf_counter() - t0)
  return float(value), sorted(times)[len(times) // 2]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--k", type=int, default=65536)
  parser.add_argument("--d", type=int, default=128)
  parser.add_argument("--block", type=int, default=1024)
  parser.add_argument("--time-k", type=int, default=8192)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--skip-big-run", action="store_true",
                      help="compile the K = --k programs but do not run them")
  args = parser.parse_args(argv)
  mesh = sharding.make_mesh()
  n = mesh.shape["data"]
  gib = 2.0**30
  print(f"{n} devices: {jax.devices()[0].device_kind}; K={args.k} d={args.d} "
        f"block={args.block}", flush=True)

  blk, blk_bytes, blk_compile = _compiled("blocked", args.k, args.d,
                                          args.block, mesh)
  _, dense_bytes, dense_compile = _compiled("dense", args.k, args.d,
                                            args.block, mesh)
  print(f"K={args.k}: per-device memory blocked {blk_bytes / gib:.3f} GiB, "
        f"dense would need {dense_bytes / gib:.2f} GiB "
        f"({dense_bytes / blk_bytes:.0f}x; one device's K/{n} x K float32 "
        f"scores alone: {args.k // n * args.k * 4 / gib:.2f} GiB); compile "
        f"{blk_compile:.1f}s / {dense_compile:.1f}s", flush=True)
  if not args.skip_big_run:
    za, zb = _inputs(args.k, args.d, mesh)
    t0 = time.perf_counter()
    value, grads = jax.block_until_ready(blk(za, zb))
    print(f"K={args.k}: blocked value_and_grad ran in "
          f"{time.perf_counter() - t0:.1f}s, value {float(value):.4f} "
          f"(log K = {jnp.log(args.k):.4f}), grads finite: "
          f"{all(bool(jnp.isfinite(g).all()) for g in grads)}", flush=True)
    del za, zb, grads

  k = args.time_k
  za, zb = _inputs(k, args.d, mesh)
  res = {}
  for path in ("dense", "blocked"):
    compiled, nbytes, _ = _compiled(path, k, args.d, args.block, mesh)
    res[path] = (*_time(compiled, za, zb, args.repeats), nbytes)
  (vd, td, md), (vb, tb, mb) = res["dense"], res["blocked"]
  print(f"K={k}: step time blocked {tb:.3f}s vs dense {td:.3f}s "
        f"(blocked/dense {tb / td:.2f}x); per-device memory {mb / gib:.3f} vs "
        f"{md / gib:.3f} GiB; |value diff| {abs(vb - vd):.1e}", flush=True)


if __name__ == "__main__":
  main()
