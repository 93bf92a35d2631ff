"""Speed of `mi_jax.estimate`: 5,000 samples of 10-d x and y, batch 256, 10,000 steps.

Target: under 10 s on a 2-core CPU, compilation included. Measures, each in
this fresh process:
  estimate (cold)  first call: tracing + compilation + 10,000 steps + read-outs
  estimate (warm)  the same call again (compiled functions cached)
  python loop      the peer: the same jitted single step called from a Python
                   loop 10,000 times (what a hand-written training loop does)
Early stopping is off (patience=None) so every call runs all 10,000 steps.
The machine's load average is printed: other processes slow every number.

  python experiments/benchmarks/estimate_speed.py [--steps 10000] [--bound smile]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mi_jax import estimation
from mi_jax.estimation import _neural
from mi_jax.estimation import tasks


def python_loop_peer(x, y, args):
  """Seconds for `steps` calls of one jitted train step from a Python loop."""
  c = _neural._compiled(  # pylint: disable=protected-access
      args.bound, (), "separable",
      _neural._freeze(_neural.DEFAULT_CRITIC_OPTIONS["separable"]),  # pylint: disable=protected-access
      x.shape[1], y.shape[1])
  x_train, y_train = jnp.asarray(x[:4000]), jnp.asarray(y[:4000])
  step = jax.jit(_neural.make_train_step(
      c.graphdef, c.tx, c.objective, lambda idx: (x_train[idx], y_train[idx])))
  t0 = time.perf_counter()
  carry = c.init(jax.random.key(0), 5e-4)
  idx = _neural.batch_indices(np.random.default_rng(0), 4000, args.steps,
                              args.batch_size)
  for i in range(args.steps):
    carry, value = step(carry, idx[i])
  jax.block_until_ready(value)
  return time.perf_counter() - t0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=10000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--bound", default="smile")
  parser.add_argument("--skip-peer", action="store_true")
  args = parser.parse_args(argv)
  x, y = tasks.correlated_gaussian(10, mi=2.0).sample(5000, seed=0)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({os.cpu_count()} cpus), load average {os.getloadavg()[0]:.1f}; "
        f"n=5000, 10-d x and y, batch {args.batch_size}, {args.steps} steps, "
        f"bound {args.bound}, critic separable "
        f"{_neural.DEFAULT_CRITIC_OPTIONS['separable']}", flush=True)
  kwargs = dict(bound=args.bound, batch_size=args.batch_size, steps=args.steps,
                patience=None)
  for label in ("estimate (cold)", "estimate (warm)"):
    t0 = time.perf_counter()
    r = estimation.estimate(x, y, **kwargs)
    secs = time.perf_counter() - t0
    print(f"{label:17s} {secs:7.2f} s  ({r.steps} steps, "
          f"{secs / r.steps * 1e3:.3f} ms/step; estimate {r})", flush=True)
  if not args.skip_peer:
    secs = python_loop_peer(x, y, args)
    print(f"{'python loop':17s} {secs:7.2f} s  ({args.steps} steps, "
          f"{secs / args.steps * 1e3:.3f} ms/step, compile included)")
  print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
