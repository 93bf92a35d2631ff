"""Speed of `mi_jax.estimate`: 5,000 samples of 10-d x and y, batch 256, 10,000 steps.

Target: under 10 s on a 2-core CPU, compilation included. Measures, each in
this fresh process:
  estimate (cold)  first call: tracing + compilation + 10,000 steps + read-outs
  estimate (warm)  the same call again (compiled functions cached)
  python loop      the peer: the same jitted single step called from a Python
                   loop 10,000 times (what a hand-written training loop does)
Early stopping is off (patience=None) so every call runs all 10,000 steps.
The machine's load average is printed: other processes slow every number;
the CPU seconds (user + system of this process during the call) move less.

  python experiments/benchmarks/estimate_speed.py [--steps 10000]
      [--kwargs '{"critic": "separable", "bound": "smile"}']
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mi_jax import estimation
from mi_jax import training
from mi_jax.estimation import tasks

CRITIC_OPTIONS = {"hidden": (128,), "out_dim": 32}


def python_loop_peer(x, y, args):
  """Seconds for `steps` calls of one jitted train step from a Python loop.

  The same model, loss and library train step as `estimate` (public names
  only), but one dispatch per step instead of a compiled `lax.scan` chunk.
  """
  t0 = time.perf_counter()
  objective = estimation.make_objective(args.bound)
  model = estimation.make_critic_model(objective, "separable", x.shape[1],
                                       y.shape[1], critic_options=CRITIC_OPTIONS)
  tx = optax.adam(5e-4)
  graphdef, state = training.init_train_state(model, tx)
  x_train, y_train = jnp.asarray(x[:4000]), jnp.asarray(y[:4000])
  loss = estimation.loss_fn(objective)
  step = jax.jit(training.make_train_step(
      graphdef, tx,
      lambda m, idx, k: loss(m, (x_train[idx], y_train[idx]), k)))
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  for i in range(args.steps):
    if i % 15 == 0:  # 15 batches of 256 per permutation of 4,000 rows
      perm = rng.permutation(4000)
    idx = perm[(i % 15) * args.batch_size:(i % 15 + 1) * args.batch_size]
    state, metrics = step(state, idx, key)
  jax.block_until_ready(metrics["loss"])
  return time.perf_counter() - t0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=10000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--bound", default="infonce",
                      help="bound of the Python-loop peer")
  parser.add_argument("--kwargs", default="{}",
                      help="JSON dict of estimate() arguments (default: its "
                      "defaults)")
  parser.add_argument("--skip-peer", action="store_true")
  args = parser.parse_args(argv)
  x, y = tasks.correlated_gaussian(10, mi=2.0).sample(5000, seed=0)
  kwargs = dict(batch_size=args.batch_size, steps=args.steps, patience=None,
                **json.loads(args.kwargs))
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({os.cpu_count()} cpus), load average {os.getloadavg()[0]:.1f}; "
        f"n=5000, 10-d x and y, estimate(**{kwargs})", flush=True)
  for label in ("estimate (cold)", "estimate (warm)"):
    t0, c0 = time.perf_counter(), os.times()
    r = estimation.estimate(x, y, **kwargs)
    secs, c1 = time.perf_counter() - t0, os.times()
    cpu = c1.user - c0.user + c1.system - c0.system
    print(f"{label:17s} {secs:7.2f} s, {cpu:6.2f} CPU s  ({r.steps} steps, "
          f"{secs / r.steps * 1e3:.3f} ms/step; estimate {r})", flush=True)
  if not args.skip_peer:
    secs = python_loop_peer(x, y, args)
    print(f"{'python loop':17s} {secs:7.2f} s  ({args.steps} steps of the "
          f"separable {args.bound} step, {secs / args.steps * 1e3:.3f} "
          "ms/step, compile included)")
  print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
