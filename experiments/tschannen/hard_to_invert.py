"""§3.1c of Tschannen et al. (ICLR 2020): bias toward hard-to-invert encoders.

g1, g2 are residual MLPs of 5 dense layers of width 392 (ReLU on all but the
last), weights ~ truncated N(0, 1e-4^2), zero biases: near the identity, so
invertible and well conditioned at the start, but free to become
non-invertible. Bilinear 392x392 critic; I_NCE and I_NWJ; inputs get
N(0, 0.05^2) noise: `--variant notebook` (default) adds the same draw to both
views and initialises the critic as Keras' Glorot-uniform, as the paper's
notebook did; `--variant fixed` draws independent noise per view and
initialises the critic as N(0, 1/392^2). Over training we track the log
condition number log(sigma_max / sigma_min) of g1's Jacobian at 128 held-out
test inputs, 32 with --quick (paper, Fig. 2c: it grows, the encoder becomes
hard to invert).

  .venv/bin/python experiments/tschannen/hard_to_invert.py  # paper setting
  .venv/bin/python experiments/tschannen/hard_to_invert.py --quick
"""

import argparse
import os
import sys
import time

import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
# pylint: disable-next=g-import-not-at-top
from mi_jax import encoders, views

BOUNDS = {"infonce": "I_NCE", "nwj": "I_NWJ"}
NOISE_STD = 0.05
JACOBIAN_POINTS = 128


def resmlp(rngs):
  return encoders.ResMLP(392, num_layers=5, init_std=1e-4, rngs=rngs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=300, quick_seeds=2,
                  quick_eval_every=150)
  parser.add_argument("--bounds", default=",".join(BOUNDS),
                      help="comma-separated subset of " + ",".join(BOUNDS))
  parser.add_argument("--jacobian_points", type=int, default=None,
                      help=f"default {JACOBIAN_POINTS}, 32 with --quick")
  args, settings, data, baseline = common.start(parser, argv)
  points = args.jacobian_points or (32 if args.quick else JACOBIAN_POINTS)
  x_jac = jnp.asarray(common.top_half_flat(data["test"]["image"][:points]))

  def log_cond(model, key):
    x = views.add_noise(x_jac, key, NOISE_STD)
    lc_B = encoders.jacobian_log_condition_numbers(model.encode1, x)
    return {"log_cond_median": jnp.median(lc_B), "log_cond_max": jnp.max(lc_B),
            "log_cond_min": jnp.min(lc_B)}

  t0 = time.time()
  results = {}
  for bound in args.bounds.split(","):
    label = BOUNDS[bound]
    program = common.multiview_program(
        resmlp, resmlp, common.bilinear_critic(392, settings), bound,
        settings, noise_std=NOISE_STD)
    program.extra_eval_fn = log_cond
    results[label] = common.run_program(label, program, data, settings)
  return common.report(
      "hard_to_invert", results, settings,
      ["accuracy", "accuracy_saga", "mi_test", "mi_trainsplit",
       "log_cond_median"],
      [("accuracy", "accuracy (linear probe on g1)"),
       ("mi_test", "I_EST (test split)"),
       ("log_cond_median", "median log(σ_max/σ_min) of g1's Jacobian")],
      baseline=baseline, title="§3.1c hard-to-invert residual encoders",
      wall_s=time.time() - t0)


if __name__ == "__main__":
  main()
