"""Input speed: steps/s with the engine's real input path vs a batch already on the device.

For two runs built from their configs by the engine (`training.run.build_run`):
  main  experiments/configs/multiview_mnist.py (Tschannen et al. §3.2: two
        MLPs 392-300-300-100 on image halves, bilinear critic, InfoNCE, Adam),
        batch 128, MNIST-5k train split (4,000 images);
  dim   experiments/configs/dim_mnist5k.py (DIM: conv encoder, local + global
        + prior terms), batch 64 (its config's);
it measures, interleaved over --rounds rounds (medians of per-round ratios):
  device     what `mi-jax train` runs with `input=auto` on these data sets:
             `run.make_feed(run)` -> `feed.DeviceFeed` (the data set on the
             device, `--scan` steps per compiled call gathering their
             batches from host-drawn BatchIterator indices);
  resident   the same step scanned over a [T, B, ...] batch already on the
             device (`make_multi_step`: the ceiling, no input work at all);
  prefetch   `input=prefetch`: one call per step, batches read and placed
             by a background thread (`feed.Prefetcher`);
  fixed      one call per step on one batch already on the device;
  host       `input=host`: one call per step, read + copy in the loop.
Targets (issue 13): device / resident >= 0.95 and prefetch / fixed >= 0.95.
Printed: the median of the per-round ratios, and the ratio of the best
rounds (on a loaded machine the best round is the least disturbed one).

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

from mi_jax.training import config as config_lib
from mi_jax.training import make_multi_step
from mi_jax.training import run as run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
CONFIGS = {"main": "multiview_mnist.py", "dim": "dim_mnist5k.py"}


def runners(name: str, n_scan: int):
  """mode -> run(n_steps) for one config; each mode keeps its own state."""
  config = config_lib.load_config(
      os.path.join(ROOT, "experiments", "configs", CONFIGS[name]))
  with config.unlocked():
    config.use_mesh = False
    config.steps_per_call = n_scan
  feeds = {}
  for mode in ("device", "prefetch", "host"):
    config.input = mode
    run = run_lib.build_run(config)
    feeds[mode] = (run, run_lib.make_feed(run))
  run = feeds["device"][0]
  key = jax.random.key(config.seed)
  batches = [next(iter_) for iter_ in [run_lib.make_iterator(run)]
             for _ in range(n_scan)]
  resident = jax.device_put(jax.tree.map(lambda *x: jnp.stack(x), *batches))
  fixed = jax.device_put(batches[0])
  jmulti = jax.jit(make_multi_step(run.step, n_scan), donate_argnums=0)
  box = {m: run_lib.build_run(config).state
         for m in ("device", "resident", "prefetch", "fixed", "host")}

  def loop(mode, calls, one):
    s = box[mode]
    for _ in range(calls):
      s, m = one(s)
    box[mode] = s
    jax.block_until_ready(s.params)

  def fed(mode, n):
    run_, feed = feeds[mode]
    per = n_scan if feed.stacked else 1
    loop(mode, n // per, lambda s: feed.run(s, per, key)[:2])

  return {
      "device": lambda n: fed("device", n),
      "resident": lambda n: loop("resident", n // n_scan,
                                 lambda s: jmulti(s, resident, key)),
      "prefetch": lambda n: fed("prefetch", n),
      "fixed": lambda n: loop("fixed", n,
                              lambda s: run.train_step(s, fixed, key)),
      "host": lambda n: fed("host", n),
  }, feeds


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--scan", type=int, default=10)
  p.add_argument("--jobs", default="main,dim")
  args = p.parse_args()
  n = args.steps - args.steps % args.scan
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}); "
        f"{n} steps x {args.rounds} rounds, scan {args.scan}", flush=True)
  for name in args.jobs.split(","):
    run, feeds = runners(name, args.scan)
    for fn in run.values():
      fn(args.scan)                      # compile + warm up
    rates = {k: [] for k in run}
    for _ in range(args.rounds):
      for k, fn in run.items():
        t0 = time.perf_counter()
        fn(n)
        rates[k].append(n / (time.perf_counter() - t0))
    for _, feed in feeds.values():
      feed.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{name}: median steps/s " + ", ".join(
        f"{k} {v:.1f}" for k, v in med.items()))
    for a, b in (("device", "resident"), ("prefetch", "fixed"),
                 ("host", "fixed")):
      r = statistics.median(x / y for x, y in zip(rates[a], rates[b]))
      target = "" if a == "host" else (
          " (target >= 0.95: " + ("met" if r >= 0.95 else "MISSED") + ")")
      best = max(rates[a]) / max(rates[b])
      print(f"  {name} {a} / {b}: {r:.2f}x{target}; best-of-rounds ratio "
            f"{best:.2f}x  (per round: " + ", ".join(
                f"{x / y:.2f}" for x, y in zip(rates[a], rates[b])) + ")",
            flush=True)
    print(f"  load average after {name}: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
  main()
