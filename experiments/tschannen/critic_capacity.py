"""§3.2 of Tschannen et al. (ICLR 2020): looser bounds with simpler critics.

MLP encoders g1, g2: 392 -> 300 -> 300 -> 100 (ReLU) on the top and bottom
MNIST halves; critics bilinear (100x100), separable (one 100-unit ReLU layer
per side to 100-d, inner product) and concat MLP ([z1, z2] 200 -> 200 -> 1);
trained with I_NCE and with I_NWJ. The paper's claim (Fig. 3): bilinear and
separable critics give higher linear-probe accuracy than the MLP critic while
reaching a lower I_NWJ. The paper's bound curves were evaluated on training
batches: `mi_trainsplit` (training split) is reported beside our held-out
`mi_test`. `--variant notebook` (default) initialises the bilinear critic as
Keras' Glorot-uniform, `--variant fixed` as N(0, 1/(Da Db)).

  .venv/bin/python experiments/tschannen/critic_capacity.py  # paper setting
  .venv/bin/python experiments/tschannen/critic_capacity.py --quick
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
from mi_jax import critics, encoders  # pylint: disable=g-import-not-at-top

BOUNDS = {"infonce": "I_NCE", "nwj": "I_NWJ"}
CRITICS = {
    "bilinear": None,  # common.bilinear_critic(100, settings)
    "separable": lambda rngs: critics.make(
        "separable", 100, 100, hidden=(100,), out_dim=100, rngs=rngs),
    "MLP": lambda rngs: critics.make("concat", 100, 100, hidden=(200,),
                                     rngs=rngs),
}


def mlp_encoder(rngs):
  return encoders.MLP(392, hidden=(300, 300), out_dim=100, rngs=rngs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=300, quick_seeds=2,
                  quick_eval_every=150)
  parser.add_argument("--critics", default=",".join(CRITICS))
  parser.add_argument("--bounds", default=",".join(BOUNDS),
                      help="comma-separated subset of infonce,nwj (each "
                      "critic runs these bounds, in this order).")
  args, settings, data, baseline = common.start(parser, argv)
  t0 = time.time()
  results = {}
  # Critic-major, in the order given: each critic with both bounds. The
  # table, CSV and figure are rewritten after every configuration, so an
  # interrupted long run leaves the configurations it finished.
  for name in args.critics.split(","):
    for bound in args.bounds.split(","):
      label = BOUNDS[bound]
      critic = CRITICS[name] or common.bilinear_critic(100, settings)
      program = common.multiview_program(
          mlp_encoder, mlp_encoder, critic, bound, settings)
      results[f"{name}, {label}"] = common.run_program(
          f"{name}, {label}", program, data, settings)
      table = common.report(
          "critic_capacity", results, settings,
          ["accuracy", "accuracy_saga", "mi_test", "mi_trainsplit"],
          common.BOUND_PANELS,
          baseline=baseline, title="§3.2 critic capacity",
          wall_s=time.time() - t0)
  return table


if __name__ == "__main__":
  main()
