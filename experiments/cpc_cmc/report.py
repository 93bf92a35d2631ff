"""Collects the CPC / CMC runs of `run_seeds.sh`: a Markdown table and the CPC per-offset figure.

  python experiments/cpc_cmc/report.py OUT_DIR [--figure docs/figures/cpc_offsets.png]

Reads OUT_DIR/<name>_s<seed>/summary.json for every run found; prints, per
method and probe, the linear-probe accuracy of the learned features, of the
raw input (pixels / pooled log-mel) and of a randomly initialised model of the
same architecture, as mean +- std over seeds (std with ddof=1), and plots the
held-out CPC accuracy per offset k (mean +- std over seeds).
"""

import argparse
import glob
import json
import os
import re

import numpy as np

NAMES = ("cpc_mnist", "cmc_mnist_core", "cmc_mnist_full", "cpc_fsdd",
         "cmc_fsdd")


def load(out_dir: str) -> dict:
  runs = {}
  for path in sorted(glob.glob(os.path.join(out_dir, "*_s*", "summary.json"))):
    name = re.sub(r"_s\d+$", "", os.path.basename(os.path.dirname(path)))
    with open(path) as f:
      runs.setdefault(name, []).append(json.load(f))
  return runs


def _stat(values) -> str:
  values = np.asarray([v for v in values if v is not None], float) * 100
  if values.size == 0:
    return "n/a"
  if values.size == 1:
    return f"{values[0]:.1f}"
  return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def table(runs: dict) -> str:
  rows = ["| method | probe | learned | raw input | random encoder | seeds | steps | mean wall per run (s, loaded CPU) |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name in NAMES:
    if name not in runs:
      continue
    summaries = runs[name]
    probes = ["probe"] if "mnist" in name else ["speaker", "digit"]
    raw = "pixel" if "mnist" in name else "logmel"
    for probe in probes:
      get = lambda key: [s.get(key) for s in summaries]
      rows.append(
          f"| {name} | {probe} | {_stat(get(f'{probe}/linear_acc'))} | "
          f"{_stat(get(f'{probe}/{raw}_linear_acc'))} | "
          f"{_stat(get(f'{probe}/random_linear_acc'))} | {len(summaries)} | "
          f"{summaries[0].get('step')} | "
          f"{np.mean([s.get('wall_s', np.nan) for s in summaries]):.0f} |")
  return "\n".join(rows)


def offsets(summaries) -> tuple:
  keys = sorted({int(k.rsplit("k", 1)[1]) for s in summaries for k in s
                 if re.fullmatch(r"eval/acc/k\d+", k)})
  acc = np.array([[s[f"eval/acc/k{k}"] for k in keys] for s in summaries])
  return np.asarray(keys), acc


def figure(runs: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = [n for n in ("cpc_mnist", "cpc_fsdd") if n in runs]
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * len(names), 3.5),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    k, acc = offsets(runs[name])
    ax.errorbar(k, 100 * acc.mean(0),
                yerr=100 * acc.std(0, ddof=1) if len(acc) > 1 else None,
                marker="o", capsize=3)
    chance = {"cpc_mnist": "1/(32 x 49) = 0.06%",     # config batch x grid
              "cpc_fsdd": "1/(16 x 16) = 0.39%"}[name]
    ax.set(xlabel="offset k (rows / steps ahead)",
           ylabel="held-out top-1 accuracy (%)",
           title=f"{name}: {len(acc)} seeds (chance {chance})")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("out_dir")
  parser.add_argument("--figure", default="docs/figures/cpc_offsets.png")
  args = parser.parse_args()
  runs = load(args.out_dir)
  print(table(runs))
  for name in ("cpc_mnist", "cpc_fsdd"):
    if name in runs:
      k, acc = offsets(runs[name])
      print(f"{name} held-out accuracy per offset (%):", ", ".join(
          f"k={a}: {100 * m:.1f}" for a, m in zip(k, acc.mean(0))))
  figure(runs, args.figure)


if __name__ == "__main__":
  main()
