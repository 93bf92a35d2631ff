"""Held-out code statistics of trained full-MNIST encoders (`full_mnist.py`).

For each variant whose states `full_mnist.py --train_only` saved in RUNS
(RUNS/VARIANT.states.npz), and each seed: on the first `--heldout` test
images, the mean per-unit JS between sigmoid(Y) and U[0,1]
(`dim_suite.marginal_uniform_js`, 20 bins), the mean |correlation| between
units (`dim_suite.mean_abs_correlation`), mean ||Y||, and, for variants with
a prior term, the co-trained discriminator's balanced accuracy on those
codes vs fresh prior samples. Cheap (no training): one encoder pass.

  python experiments/dim/code_stats.py --runs /tmp/dim_runs \
      --variants L,L_prior,LG,LG_prior,G_prior,P,P_minimax \
      --out experiments/dim/results/code_stats.json
"""

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import full_mnist  # pylint: disable=g-import-not-at-top,wrong-import-position
import prior_curve  # pylint: disable=g-import-not-at-top,wrong-import-position
from mi_jax import data  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", required=True)
  p.add_argument("--variants", required=True)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--heldout", type=int, default=2000)
  p.add_argument("--out", default="experiments/dim/results/code_stats.json")
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",")]
  test = np.asarray(data.load_arrays("mnist", "test")["image"][:args.heldout],
                    np.float32)
  dummy = np.zeros((1, 28, 28, 1), np.float32)
  out = {}
  for variant in args.variants.split(","):
    settings = full_mnist.VARIANTS.get(variant, full_mnist.VARIANTS["L"])
    graphdef, states, _, _ = full_mnist.train(
        settings, dummy, seeds=seeds, steps=0, chunk=1, lr=1e-3)
    saved = np.load(os.path.join(args.runs, f"{variant}.states.npz"))
    treedef = jax.tree.structure((states.params, states.rest))
    params, rest = jax.tree.unflatten(
        treedef, [jnp.asarray(saved[f"arr_{i}"]) for i in range(len(saved.files))])
    per_seed = []
    for i, seed in enumerate(seeds):
      model = nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], params),
                        jax.tree.map(lambda x, i=i: x[i], rest))
      model.eval()
      per_seed.append(prior_curve.heldout_stats(model, test, seed, 0))
    out[variant] = {k: [r.get(k, float("nan")) for r in per_seed]
                    for k in per_seed[0]}
    print(variant, {k: round(float(np.mean(v)), 4) for k, v in out[variant].items()},
          flush=True)
  out["_uniform_floor"] = prior_curve.dim_suite.marginal_uniform_js(
      np.random.default_rng(0).uniform(size=(args.heldout, 64)))
  out["_settings"] = {"heldout": args.heldout, "seeds": seeds, "bins": 20}
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
