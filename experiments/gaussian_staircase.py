"""The Gaussian staircase of Poole et al. (2019) and Song & Ermon (2020).

x, y in R^20 with corr(x_i, y_i) = rho, stepping the true MI through
2, 4, 6, 8, 10 nats (I = -d/2 log(1 - rho^2)), 4,000 Adam steps per level,
batch 64, fresh samples every step; and the cubic variant (y -> y^3, same MI).
One critic per bound is trained through the whole staircase, as in the
papers; each step's value on its fresh batch is the estimate plotted.
Training is one compiled `lax.scan` per level (compiled once per bound).

Outputs (in --out): staircase.png (estimate vs step per bound, true MI
dashed), staircase_steps.csv (every step), staircase_summary.csv (bias,
variance, MSE per bound, variant and level over the last half of each level),
and the same table on stdout.

  python experiments/gaussian_staircase.py              # full: 20,000 steps/bound
  python experiments/gaussian_staircase.py --quick      # 500 steps per level
"""

import argparse
import csv
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mi_jax import estimation
from mi_jax import training
from mi_jax.estimation import tasks

BOUNDS = ("infonce", "nwj", "tuba", "dv", "mine", "jsd", "interpolated", "smile")
BOUND_OPTIONS = {"smile": {"clip": 5.0}, "interpolated": {"alpha": 0.5}}


def make_level_runner(bound, critic, dim, batch_size, lr, critic_options):
  """Returns (init(seed) -> state, run(state, key, rho, cubic, steps) -> (state, values)).

  The library's train step (`mi_jax.training.make_train_step`, with its
  non-finite guard) on the estimator's loss (`estimation.loss_fn`: -bound;
  TUBA / I_alpha learn their baseline a(x), MINE's moving average rides in
  the state), scanned over a level's steps by `make_multi_step`. The batch of
  step t is drawn inside the step from its key: `rho` and `cubic` are traced,
  so every level and both variants reuse one compilation.
  """
  objective = estimation.make_objective(bound, BOUND_OPTIONS.get(bound))
  tx = optax.adam(lr)
  make = lambda seed: estimation.make_critic_model(
      objective, critic, dim, dim, seed=seed, critic_options=critic_options)
  graphdef, _ = training.init_train_state(make(0), tx)
  loss = estimation.loss_fn(objective)

  def sampled_loss(model, level, key):
    rho, cubic = level
    kx, ke = jax.random.split(key)
    x_BxD = jax.random.normal(kx, (batch_size, dim))
    e_BxD = jax.random.normal(ke, (batch_size, dim))
    y_BxD = rho * x_BxD + jnp.sqrt(1.0 - rho**2) * e_BxD
    return loss(model, (x_BxD, jnp.where(cubic, y_BxD**3, y_BxD)), key)

  step = training.make_train_step(graphdef, tx, sampled_loss)

  def init(seed):
    return training.init_train_state(make(seed), tx)[1]

  @functools.partial(jax.jit, static_argnums=4)
  def run(state, key, rho, cubic, steps):
    level = (jnp.full((steps,), rho), jnp.full((steps,), cubic))
    state, metrics = training.make_multi_step(step, steps)(state, level, key)
    return state, metrics["value"]

  return init, run


def summarize(values, levels, steps_per_level):
  """Per level: (true, mean, bias, variance, mse) over the level's last half."""
  rows = []
  for i, mi in enumerate(levels):
    v = values[i * steps_per_level + steps_per_level // 2:
               (i + 1) * steps_per_level]
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else float("nan")
    var = float(v.var()) if len(v) else float("nan")
    rows.append((mi, mean, mean - mi, var, (mean - mi)**2 + var))
  return rows


def plot(results, levels, steps_per_level, batch_size, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  variants = sorted({v for v, _ in results}, key=["gaussian", "cubic"].index)
  bounds = [b for b in BOUNDS if any(k == (v, b) for v in variants
                                     for k in results)]
  fig, axes = plt.subplots(len(variants), len(bounds),
                           figsize=(2.2 * len(bounds), 2.3 * len(variants)),
                           sharex=True, sharey=True, squeeze=False)
  total = len(levels) * steps_per_level
  steps = np.arange(total)
  truth = np.repeat(levels, steps_per_level)
  stride = max(1, total // 2000)
  for r, variant in enumerate(variants):
    for c, bound in enumerate(bounds):
      ax = axes[r, c]
      v = results[(variant, bound)]
      ema = np.copy(v)
      a = 0.01
      for t in range(1, len(v)):
        prev = ema[t - 1] if np.isfinite(ema[t - 1]) else v[t]
        ema[t] = prev + a * (v[t] - prev) if np.isfinite(v[t]) else prev
      ax.plot(steps[::stride], v[::stride], color="C0", alpha=0.25, lw=0.5)
      ax.plot(steps, ema, color="C0", lw=1.2)
      ax.plot(steps, truth, "k--", lw=1)
      if bound == "infonce":
        ax.axhline(np.log(batch_size), color="C3", ls=":", lw=1)
      ax.set_ylim(-4, max(levels) + 4)
      if r == 0:
        ax.set_title(bound, fontsize=9)
      if c == 0:
        ax.set_ylabel(f"{variant}\nMI (nats)", fontsize=8)
      ax.tick_params(labelsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="500 steps per level instead of 4,000")
  parser.add_argument("--steps-per-level", type=int, default=4000)
  parser.add_argument("--levels", default="2,4,6,8,10")
  parser.add_argument("--dim", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--lr", type=float, default=5e-4)
  parser.add_argument("--critic", default="separable",
                      help="separable (default) or concat (slow on CPU)")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--embed", type=int, default=32,
                      help="separable critic's embedding width")
  parser.add_argument("--bounds", default=",".join(BOUNDS))
  parser.add_argument("--variants", default="gaussian,cubic")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="experiments/outputs/gaussian_staircase")
  args = parser.parse_args(argv)
  steps_per_level = 500 if args.quick else args.steps_per_level
  levels = [float(v) for v in args.levels.split(",")]
  bounds = args.bounds.split(",")
  variants = args.variants.split(",")
  # Poole et al.'s critics: 2 hidden layers of 256 (ReLU), embedding 32.
  critic_options = {"hidden": args.hidden, "layers": args.layers}
  if args.critic == "separable":
    critic_options["out_dim"] = args.embed
  os.makedirs(args.out, exist_ok=True)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; "
        f"{len(levels)} levels x {steps_per_level} steps, batch "
        f"{args.batch_size}, dim {args.dim}, critic {args.critic}", flush=True)

  results, timings = {}, {}
  for b_i, bound in enumerate(bounds):
    t0 = time.perf_counter()
    init, run = make_level_runner(bound, args.critic, args.dim,
                                  args.batch_size, args.lr, critic_options)
    for v_i, variant in enumerate(variants):
      state = init(args.seed + 100 * v_i + b_i)
      key = jax.random.key(args.seed + 100 * v_i)
      values = []
      for mi in levels:
        key, sub = jax.random.split(key)
        rho = tasks.rho_for_mi(mi, args.dim)
        state, vals = run(state, sub, jnp.float32(rho),
                          jnp.asarray(variant == "cubic"), steps_per_level)
        values.append(np.asarray(vals))
      results[(variant, bound)] = np.concatenate(values)
    timings[bound] = time.perf_counter() - t0
    print(f"  {bound:13s} {timings[bound]:6.1f} s", flush=True)

  total = len(levels) * steps_per_level
  with open(os.path.join(args.out, "staircase_steps.csv"), "w",
            newline="") as f:
    w = csv.writer(f)
    w.writerow(["variant", "bound", "step", "true_mi", "estimate"])
    truth = np.repeat(levels, steps_per_level)
    for (variant, bound), v in results.items():
      for t in range(total):
        w.writerow([variant, bound, t, truth[t], f"{v[t]:.5g}"])

  summary_path = os.path.join(args.out, "staircase_summary.csv")
  with open(summary_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["variant", "bound", "true_mi", "mean", "bias", "variance",
                "mse"])
    for (variant, bound), v in results.items():
      for row in summarize(v, levels, steps_per_level):
        w.writerow([variant, bound] + [f"{r:.4f}" for r in row])

  header = " ".join(f"{f'MI={mi:g}':>15s}" for mi in levels)
  for variant in variants:
    print(f"\n{variant}: bias / variance over the last half of each level "
          f"(log {args.batch_size} = {np.log(args.batch_size):.2f})")
    print(f"{'bound':13s} {header}")
    for bound in bounds:
      rows = summarize(results[(variant, bound)], levels, steps_per_level)
      cells = " ".join(f"{f'{r[2]:+.3g}/{r[3]:.3g}':>15s}" for r in rows)
      print(f"{bound:13s} {cells}")

  png = os.path.join(args.out, "staircase.png")
  plot(results, levels, steps_per_level, args.batch_size, png)
  print(f"\nwrote {png}, {summary_path}, staircase_steps.csv; "
        f"total {sum(timings.values()):.1f} s")


if __name__ == "__main__":
  main()
