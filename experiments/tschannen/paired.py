"""Paired per-seed differences between two configurations of saved runs.

Seeds share their initialisation across configurations, so the comparison of
two configurations is per seed: for each metric, A - B at a step (default:
the last step both have), then mean ± std over seeds, min–max, and how many
seeds have A > B.

  python experiments/tschannen/paired.py a.csv b.csv \
      --a "bilinear, I_NWJ" --b "MLP, I_NWJ" \
      --metrics accuracy,accuracy_saga,mi_test,mi_trainsplit
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import combine  # pylint: disable=g-import-not-at-top


def paired(rows_a: list[dict], rows_b: list[dict], metric: str,
           step: int | None = None) -> dict:
  """{"step", "n", "mean", "std", "min", "max", "a_above"} of A - B per seed."""
  def at(rows, st):
    return {r["seed"]: r[metric] for r in rows
            if r["step"] == st and metric in r and np.isfinite(r[metric])}
  if step is None:
    common_steps = ({r["step"] for r in rows_a if metric in r}
                    & {r["step"] for r in rows_b if metric in r})
    step = max(common_steps)
  a, b = at(rows_a, step), at(rows_b, step)
  seeds = sorted(set(a) & set(b))
  d = np.asarray([a[s] - b[s] for s in seeds], np.float64)
  return {"step": step, "n": len(seeds), "mean": float(d.mean()),
          "std": float(d.std()), "min": float(d.min()),
          "max": float(d.max()), "a_above": int((d > 0).sum()),
          "a_mean": float(np.mean([a[s] for s in seeds])),
          "b_mean": float(np.mean([b[s] for s in seeds]))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("csvs", nargs="+")
  parser.add_argument("--a", required=True, help="config name A")
  parser.add_argument("--b", required=True, help="config name B")
  parser.add_argument("--metrics",
                      default="accuracy,accuracy_saga,mi_test,mi_trainsplit")
  parser.add_argument("--step", type=int, default=None)
  args = parser.parse_args(argv)
  results = {}
  for path in args.csvs:
    for r in combine.read_rows(path):
      results.setdefault(r["config"], []).append(r)
  lines = [f"A = {args.a}, B = {args.b}",
           "| metric | step | seeds | A | B | A − B (mean ± std) | min–max "
           "| seeds with A > B |", "|---|---|---|---|---|---|---|---|"]
  for m in args.metrics.split(","):
    p = paired(results[args.a], results[args.b], m, args.step)
    lines.append(
        f"| {m} | {p['step']} | {p['n']} | {p['a_mean']:.3f} | "
        f"{p['b_mean']:.3f} | {p['mean']:+.3f} ± {p['std']:.3f} | "
        f"{p['min']:+.3f} – {p['max']:+.3f} | {p['a_above']}/{p['n']} |")
  print("\n".join(lines))
  return lines


if __name__ == "__main__":
  main()
