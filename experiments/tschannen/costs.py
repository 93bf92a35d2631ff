"""Per-step and per-evaluation costs of the Tschannen et al. experiments.

For each experiment's model this builds the same seed-vmapped training chunk
the experiment runs (`common.make_chunk_fn`), compiles it, then times one
further chunk of `--steps` steps (CPU and wall seconds per step and seed), and
times g1's features on 1,000 images. It also reports XLA's own count of
floating-point operations per training step and seed
(`compiled.cost_analysis()`), a machine-independent figure from which the
owner of an accelerator can estimate the wall time of the paper's setting
(`--full`: 20 seeds x 20,000 steps, plus 21 evaluations).

For §3.3 it times the ConvNet step both ways (inside `lax.scan` and as a
Python loop of jitted steps) to show what dominates on XLA:CPU.

  python experiments/tschannen/costs.py --dataset mnist --seeds 2 --steps 20
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# pylint: disable=g-import-not-at-top
from experiments.tschannen import common
from experiments.tschannen import critic_capacity
from experiments.tschannen import encoder_arch
from experiments.tschannen import hard_to_invert
from experiments.tschannen import invertible
from mi_jax import training


def configs(settings):
  """(name, Program) of one configuration per model family."""
  bil100 = common.bilinear_critic(100, settings)
  bil392 = common.bilinear_critic(392, settings)
  mlp = critic_capacity.mlp_encoder
  out = [
      ("§3.2 MLP enc, bilinear critic", common.multiview_program(
          mlp, mlp, bil100, "infonce", settings)),
      ("§3.2 MLP enc, MLP critic", common.multiview_program(
          mlp, mlp, critic_capacity.CRITICS["MLP"], "infonce", settings)),
      ("§3.1c ResMLP, bilinear 392", common.multiview_program(
          hard_to_invert.resmlp, hard_to_invert.resmlp, bil392, "infonce",
          settings, noise_std=hard_to_invert.NOISE_STD)),
      ("§3.1a RealNVP x2 (30 additive)", common.multiview_program(
          invertible.realnvp(0), invertible.realnvp(1), bil392, "infonce",
          settings)),
  ]
  for scan in (True, False):
    p = common.multiview_program(encoder_arch.convnet, encoder_arch.convnet,
                                 bil100, "infonce", settings, flatten=False,
                                 target=2.0)
    p.scan = scan
    out.append((f"§3.3 ConvNet ({'lax.scan' if scan else 'Python loop'})", p))
  return out


def flops_per_step(step_fn, states, images, labels, key):
  """XLA's flop count of one jitted (unvmapped) training step, or NaN."""
  def one(state, images, labels, key):
    batch = common.sample_batch(images, labels, key, 128)
    return step_fn(state, batch, key)
  try:
    state0 = jax.tree.map(lambda x: x[0], states)
    cost = jax.jit(one).lower(state0, images, labels, key).compile(
    ).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", np.nan))
  except Exception:  # pylint: disable=broad-except
    return float("nan")


def measure(name, program, data, settings, steps):
  keys_S = common.seed_keys(range(settings.seeds))
  graphdef, states = training.init_train_states(program.model_fn, program.tx,
                                                keys_S)
  step_fn = training.make_train_step(graphdef, program.tx, program.loss_fn)
  chunk = common.make_chunk_fn(step_fn, steps, 128, program.scan)
  images = jax.numpy.asarray(data["train"]["image"])
  labels = jax.numpy.asarray(data["train"]["label"])
  tw, tc = time.time(), time.process_time()
  states, m = chunk(states, keys_S, images, labels)
  jax.block_until_ready(m)
  first = time.process_time() - tc, time.time() - tw
  keys2 = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys_S)
  tw, tc = time.time(), time.process_time()
  states, m = chunk(states, keys2, images, labels)
  jax.block_until_ready(m)
  cpu, wall = time.process_time() - tc, time.time() - tw
  s = settings.seeds

  @jax.jit
  def feats(states, x, key):
    def one(state):
      model = training.merge_model(graphdef, state.params, state.rest)
      model.eval()
      return program.features_fn(model, x, key)
    return jax.vmap(one)(states)
  x = images[:1000]
  jax.block_until_ready(feats(states, x, keys_S[0]))
  tc = time.process_time()
  jax.block_until_ready(feats(states, x, keys_S[0]))
  feat_cpu = (time.process_time() - tc) / s
  flops = flops_per_step(step_fn, states, images, labels, keys_S[0])
  return {"config": name, "cpu_step_seed": cpu / steps / s,
          "wall_step": wall / steps, "compile_cpu": first[0] - cpu,
          "feat_cpu_1k": feat_cpu, "gflop_step_seed": flops / 1e9}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=10, quick_seeds=2)
  parser.add_argument("--only", default="",
                      help="comma-separated substrings of config names")
  args = parser.parse_args(argv)
  settings = common.settings_from_args(args)
  steps = args.steps or 10
  data = common.load_mnist(settings)
  rows = []
  for name, program in configs(settings):
    if args.only and not any(o in name for o in args.only.split(",")):
      continue
    r = measure(name, program, data, settings, steps)
    rows.append(r)
    print(r, flush=True)
  n_eval = 21
  lines = [f"Costs on this CPU ({settings.dataset}, {settings.seeds} seeds "
           f"vmapped, {steps} timed steps after compilation, "
           f"{settings.variant} setting)", "",
           "| config | CPU s / step / seed | wall s / step (all seeds) | "
           "GFLOP / step / seed (XLA) | features: CPU s / 1k images / seed | "
           "compile, CPU s | --full training, CPU h (20 seeds x 20k steps) |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    full_h = r["cpu_step_seed"] * 20_000 * 20 / 3600
    lines.append(
        f"| {r['config']} | {r['cpu_step_seed']:.4f} | {r['wall_step']:.3f} | "
        f"{r['gflop_step_seed']:.3f} | {r['feat_cpu_1k']:.3f} | "
        f"{r['compile_cpu']:.1f} | {full_h:.1f} |")
  lines.append(f"\nPer evaluation and seed add: features of 70k images "
               f"(70 x the features column), both probes, {n_eval} "
               "evaluations in --full.")
  table = "\n".join(lines)
  print(table)
  os.makedirs(settings.out_dir, exist_ok=True)
  with open(os.path.join(settings.out_dir,
                         f"costs_{common.run_tag(settings)}.md"), "w") as f:
    f.write(table + "\n")


if __name__ == "__main__":
  main()
