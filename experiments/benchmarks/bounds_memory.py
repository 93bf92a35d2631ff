"""Benchmark: memory-linear (blocked) InfoNCE vs the dense score matrix.

Run (CPU):
  .venv/bin/python experiments/benchmarks/bounds_memory.py
  .venv/bin/python experiments/benchmarks/bounds_memory.py --k 4096 --time-k 1024  # quick

1. Peak RSS of one forward+backward of `mi_jax.bounds.blocked.infonce` at
   K = 65,536, d = 128 (the dense [K, K] scores alone would take 17 GB), each
   measurement in a fresh subprocess (ru_maxrss of that process). Target: < 2 GB.
2. Wall time of the jitted value_and_grad at K = 8,192: blocked vs dense
   `mi_jax.bounds.infonce(za @ zb.T)` (median of --repeats runs after a
   warm-up). Target: blocked / dense <= 1.3.
Prints one line per measurement and a summary with the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _child(args):
  """Runs one measurement in this (fresh) process; prints a JSON line."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mi_jax import bounds  # pylint: disable=g-import-not-at-top

  k, d = args.k, args.d
  ka, kb = jax.random.split(jax.random.key(0))
  za = jax.random.normal(ka, (k, d), jnp.float32) / d**0.5
  zb = za + 0.1 * jax.random.normal(kb, (k, d), jnp.float32) / d**0.5
  if args.path == "blocked":
    fn = lambda a, b: bounds.blocked.infonce(a, b, block_size=args.block)
  else:
    fn = lambda a, b: bounds.infonce(a @ b.T)
  step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
  jax.block_until_ready((za, zb))
  rss_inputs_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  t0 = time.perf_counter()
  compiled = step.lower(za, zb).compile()
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    value, grads = jax.block_until_ready(compiled(za, zb))
    times.append(time.perf_counter() - t0)
  times.sort()
  print(json.dumps({
      "path": args.path, "k": k, "d": d, "block": args.block,
      "value": float(value),
      "grad_finite": bool(all(jnp.isfinite(g).all() for g in grads)),
      "compile_s": compile_s, "median_s": times[len(times) // 2],
      "min_s": times[0],
      "rss_before_mb": rss_inputs_mb,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "device": str(jax.devices()[0]),
  }))


def _run(path, k, d, block, repeats):
  cmd = [sys.executable, os.path.abspath(__file__), "--child", "--path", path,
         "--k", str(k), "--d", str(d), "--block", str(block),
         "--repeats", str(repeats)]
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       check=False)
  if out.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
  res = json.loads(out.stdout.strip().splitlines()[-1])
  print(f"{res['path']:8s} K={res['k']:6d} d={res['d']} block={res['block']}: "
        f"value={res['value']:.4f} grad_finite={res['grad_finite']} "
        f"compile={res['compile_s']:.1f}s median={res['median_s']:.3f}s "
        f"peak_rss={res['peak_rss_mb']:.0f} MB "
        f"(after inputs {res['rss_before_mb']:.0f} MB) on {res['device']}",
        flush=True)
  return res


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--k", type=int, default=65536)
  parser.add_argument("--d", type=int, default=128)
  parser.add_argument("--block", type=int, default=1024)
  parser.add_argument("--time-k", type=int, default=8192)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip-memory", action="store_true")
  parser.add_argument("--skip-timing", action="store_true")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--path", default="blocked", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return _child(args)

  summary = []
  if not args.skip_memory:
    big = _run("blocked", args.k, args.d, args.block, 1)
    summary.append(
        f"memory: blocked K={args.k} d={args.d} forward+backward peak RSS "
        f"{big['peak_rss_mb'] / 1024:.2f} GB (target < 2 GB: "
        f"{'met' if big['peak_rss_mb'] < 2048 else 'MISSED'}); the dense "
        f"[K, K] float32 scores alone would be "
        f"{args.k**2 * 4 / 2**30:.1f} GB")
  if not args.skip_timing:
    dense = _run("dense", args.time_k, args.d, args.block, args.repeats)
    blk = _run("blocked", args.time_k, args.d, args.block, args.repeats)
    ratio = blk["median_s"] / dense["median_s"]
    summary.append(
        f"time: K={args.time_k} value_and_grad blocked/dense = {ratio:.2f}x "
        f"({blk['median_s']:.3f}s vs {dense['median_s']:.3f}s; target <= 1.3x:"
        f" {'met' if ratio <= 1.3 else 'MISSED'}); peak RSS blocked/dense = "
        f"{blk['peak_rss_mb']:.0f}/{dense['peak_rss_mb']:.0f} MB; "
        f"|value diff| = {abs(blk['value'] - dense['value']):.2e}")
  print("\n".join(["== summary =="] + summary))


if __name__ == "__main__":
  main()
