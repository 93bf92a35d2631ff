"""§3.3 of Tschannen et al. (ICLR 2020): encoder architecture vs the estimator.

g1, g2 are either two ConvNets (conv 5x5/64/2 -> conv 5x5/128/2 -> LayerNorm
-> global average pool -> dense 100, on the [14, 28, 1] halves) or two MLPs
(392 -> 300 -> 300 -> 100); bilinear 100x100 critic. Instead of maximising
the bound, the encoders are trained to hit a target value t in {2, 4} with
the loss |I_EST - t|, for I_EST in {I_NCE, I_NWJ}. The paper's claim
(Fig. 4a/b): at matched bound values the ConvNet gives clearly better
linear-probe accuracy than the MLP.

  .venv/bin/python experiments/tschannen/encoder_arch.py  # paper setting
  .venv/bin/python experiments/tschannen/encoder_arch.py --quick
"""

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
from mi_jax import encoders  # pylint: disable=g-import-not-at-top

BOUNDS = {"infonce": "I_NCE", "nwj": "I_NWJ"}
TARGETS = (2.0, 4.0)


def convnet(rngs):
  return encoders.ConvNet(in_channels=1, channels=64, kernel_size=5,
                          out_dim=100, rngs=rngs)


def mlp(rngs):
  return encoders.MLP(392, hidden=(300, 300), out_dim=100, rngs=rngs)


ENCODERS = {"ConvNet": (convnet, False), "MLP": (mlp, True)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=50, quick_seeds=2,
                  quick_eval_every=50)
  parser.add_argument("--encoders", default=",".join(ENCODERS))
  parser.add_argument("--bounds", default=",".join(BOUNDS),
                      help="comma-separated subset of infonce,nwj.")
  parser.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS),
                      help="comma-separated target values t of |I_EST - t|.")
  args, settings, data, baseline = common.start(parser, argv)
  t0 = time.time()
  results = {}
  for bound in args.bounds.split(","):
    label = BOUNDS[bound]
    for target in [float(t) for t in args.targets.split(",")]:
      for name in args.encoders.split(","):
        make, flatten = ENCODERS[name]
        program = common.multiview_program(
            make, make, common.bilinear_critic(100, settings), bound,
            settings, flatten=flatten,
            target=target)
        if name == "ConvNet" and jax.default_backend() == "cpu":
          program.scan = False  # XLA:CPU convolutions are slow in loops.
        cfg = f"{name} ({label}, t={target:g})"
        results[cfg] = common.run_program(cfg, program, data, settings)
        # Rewritten after every configuration, so an interrupted long run
        # keeps the configurations it finished.
        table = common.report(
            "encoder_arch", results, settings,
            ["accuracy", "accuracy_saga", "mi_test", "mi_trainsplit"],
            common.BOUND_PANELS,
            baseline=baseline, title="§3.3 encoder architecture, |I_EST - t|",
            wall_s=time.time() - t0)
  return table


if __name__ == "__main__":
  main()
