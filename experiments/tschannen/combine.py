"""Merges the CSVs of several runs of one experiment into one table and figure.

For runs split over processes (e.g. §3.2 one critic per process):

  python experiments/tschannen/combine.py --out PREFIX a.csv b.csv ...

writes PREFIX.md (the `common.summary_table` of all configurations) and
PREFIX.png (exact-probe and saga accuracy, and the bound on the test and
training splits, per configuration, mean ± std over seeds).
"""

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top

METRICS = ["accuracy", "accuracy_saga", "mi_test", "mi_trainsplit"]


def read_rows(path: str) -> list[dict]:
  """CSV rows of `common.write_csv`, numbers parsed, empty cells dropped."""
  rows = []
  with open(path, newline="") as f:
    for r in csv.DictReader(f):
      row = {}
      for k, v in r.items():
        if v == "":
          continue
        try:
          row[k] = int(v) if k in ("seed", "step", "nonfinite_steps") \
              else float(v)
        except ValueError:
          row[k] = v
      rows.append(row)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("csvs", nargs="+")
  parser.add_argument("--out", required=True, help="output path prefix")
  parser.add_argument("--title", default="")
  parser.add_argument("--baseline", type=float, default=None)
  args = parser.parse_args(argv)
  results = {}
  for path in args.csvs:
    for r in read_rows(path):
      results.setdefault(r["config"], []).append(r)
  table = common.summary_table(results, METRICS, baseline=args.baseline,
                               title=args.title)
  with open(args.out + ".md", "w") as f:
    f.write(table + "\n\nFrom: " + ", ".join(args.csvs) + "\n")
  common.plot_panels(
      results, [("accuracy", "accuracy (exact L-BFGS probe)"),
                ("accuracy_saga", "accuracy (saga, tol 0.1)"),
                ("mi_test", "bound, test split"),
                ("mi_trainsplit", "bound, training split")],
      args.out + ".png", baseline=args.baseline, suptitle=args.title)
  print(table)


if __name__ == "__main__":
  main()
