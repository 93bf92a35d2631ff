"""§3.1a of Tschannen et al. (ICLR 2020): MI maximization, invertible encoders.

g1, g2 are RealNVP encoders of 30 additive couplings (each a 2x512 ReLU MLP
of the 196 kept coordinates; a fixed random permutation after each), with
weights ~ truncated N(0, 1e-4^2) and zero biases so that both start near the
identity; bilinear 392x392 critic; trained with I_NCE and with I_NWJ. Since
g1, g2 are invertible, I(g1(x1); g2(x2)) = I(x1; x2) is constant, yet the
bound estimate and the linear-probe accuracy of g1 change over training
(paper, Fig. 1a/b). The permutations are fixed per encoder (NumPy seeds 0 for
g1 and 1 for g2) and shared by the vmapped seeds; the weights differ per seed.
`--variant notebook` (default) initialises the critic as Keras' Glorot-uniform,
`--variant fixed` as N(0, 1/392^2).

  .venv/bin/python experiments/tschannen/invertible.py          # paper setting
  .venv/bin/python experiments/tschannen/invertible.py --quick
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
from mi_jax import encoders  # pylint: disable=g-import-not-at-top

BOUNDS = {"infonce": "I_NCE", "nwj": "I_NWJ"}


def realnvp(perm_seed, coupling="additive", num_couplings=30):
  def make(rngs):
    return encoders.RealNVP(392, num_couplings=num_couplings,
                            hidden=(512, 512), coupling=coupling,
                            init_std=1e-4, seed=perm_seed, rngs=rngs)
  return make


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=40, quick_seeds=2, quick_eval_every=20)
  parser.add_argument("--couplings", type=int, default=30)
  args, settings, data, baseline = common.start(parser, argv)
  t0 = time.time()
  results = {}
  for bound, label in BOUNDS.items():
    program = common.multiview_program(
        realnvp(0, num_couplings=args.couplings),
        realnvp(1, num_couplings=args.couplings),
        common.bilinear_critic(392, settings), bound, settings)
    results[label] = common.run_program(label, program, data, settings)
  return common.report(
      "invertible", results, settings,
      ["accuracy", "accuracy_saga", "mi_test", "mi_trainsplit"],
      [("accuracy", "accuracy (linear probe on g1)"),
       ("mi_test", "I_EST (test split)")],
      baseline=baseline, title="§3.1a invertible RealNVP encoders",
      wall_s=time.time() - t0)


if __name__ == "__main__":
  main()
