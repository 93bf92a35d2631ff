"""Accuracy table: estimates vs the true MI on tasks with known MI, with wall time.

Tasks (mi_jax.estimation.tasks; after Czyz et al. 2023, "Beyond normal"):
dense and sparse multivariate normals, a 10-d correlated Gaussian, nonlinear
invertible transforms of normals (asinh, cubic: MI unchanged) and Student-t
pairs (closed-form MI of the multivariate t). Estimators: the neural bounds
through `mi_jax.estimate` (held-out read-out), the Gaussian/CCA closed form
and KSG (k=5). Prints a markdown table (estimate ± SE, wall seconds) and
writes it with a CSV to --out.

  python experiments/estimation_accuracy.py                # 5,000 samples
  python experiments/estimation_accuracy.py --quick        # 2,000 samples, 2 bounds, batch 128
  python experiments/estimation_accuracy.py --preprocess gaussianize --tasks cubic,student
"""

import argparse
import csv
import os
import time

import jax
import numpy as np

from mi_jax import estimation
from mi_jax.estimation import tasks

NEURAL = ("infonce", "nwj", "mine", "jsd", "smile")


def make_tasks():
  gauss10 = tasks.correlated_gaussian(10, mi=2.0)
  sparse = tasks.sparse_gaussian(5, 5, n_pairs=2, rho=0.8)
  return [
      tasks.dense_gaussian(5, 5, correlation=0.5),
      sparse,
      gauss10,
      tasks.asinh(sparse),
      tasks.cubic(gauss10),
      tasks.student_t(2, 2, df=3.0, rho=0.5),
      tasks.student_t(5, 5, df=2.0, rho=0.0),
  ]


def run_estimator(name, x, y, args):
  """Returns (value, stderr or nan, flags, seconds)."""
  t0 = time.perf_counter()
  if name == "gaussian":
    value, se, flags = estimation.gaussian_mi(x, y), float("nan"), ()
  elif name == "ksg":
    value, se, flags = estimation.ksg_mi(x, y, k=5), float("nan"), ()
  else:
    kwargs = {k: v for k, v in (("critic", args.critic),
                                ("preprocess", args.preprocess)) if v}
    r = estimation.estimate(
        x, y, bound=name, batch_size=args.batch_size, steps=args.steps,
        seed=args.seed, bound_options={"clip": 5.0} if name == "smile" else None,
        **kwargs)
    value, se, flags = r.mi, r.stderr, r.flags
  return value, se, flags, time.perf_counter() - t0


def _num(v: float) -> str:
  return f"{v:.2f}" if abs(v) < 100 else f"{v:.2g}"


def format_table(csv_path: str) -> str:
  """Markdown table (tasks x estimators) from the CSV that `main` writes.

  Cells: estimate ± SE (wall seconds); † at the InfoNCE log K ceiling, ↑ still
  rising, ✗ diverged.
  """
  with open(csv_path) as f:
    records = list(csv.DictReader(f))
  names = list(dict.fromkeys(r["estimator"] for r in records))
  task_names = list(dict.fromkeys(r["task"] for r in records))
  lines = ["| task (dim x + dim y) | true MI | " + " | ".join(names) + " |",
           "|---|---|" + "---|" * len(names)]
  for task in task_names:
    cells, head = [], None
    for r in records:
      if r["task"] != task:
        continue
      head = r
      value, se = float(r["estimate"]), float(r["stderr"])
      text = _num(value) if np.isnan(se) else f"{_num(value)} ± {_num(se)}"
      flags = r["flags"].split()
      text += ("†" if "log_k_ceiling" in flags else "") + (
          "↑" if "still_rising" in flags else "") + (
              "✗" if "diverged" in flags else "")
      cells.append(f"{text} ({float(r['seconds']):.0f} s)")
    lines.append(f"| {task} ({head['dim_x']}+{head['dim_y']}) | "
                 f"{float(head['true_mi']):.2f} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--n", type=int, default=5000)
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--critic", default=None,
                      help="default: estimate()'s default critic")
  parser.add_argument("--bounds", default=",".join(NEURAL))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--preprocess", default=None,
                      help="standardize, gaussianize or none (neural bounds)")
  parser.add_argument("--tasks", default="",
                      help="comma-separated substrings of task names to run")
  parser.add_argument("--out", default="experiments/outputs/estimation_accuracy")
  args = parser.parse_args(argv)
  if args.quick:
    # batch 128: 2,000 samples leave 200 validation rows (holdout 0.2 / 2)
    args.n, args.steps, args.bounds = 2000, 2000, "infonce,smile"
    args.batch_size = min(args.batch_size, 128)
  names = args.bounds.split(",") + ["gaussian", "ksg"]
  os.makedirs(args.out, exist_ok=True)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; n={args.n}, "
        f"steps<={args.steps}, batch {args.batch_size}, critic {args.critic}, "
        f"preprocess {args.preprocess}, load average "
        f"{os.getloadavg()[0]:.1f}", flush=True)

  rows = []
  selected = [t for t in make_tasks() if not args.tasks
              or any(k in t.name for k in args.tasks.split(","))]
  for task in selected:
    x, y = task.sample(args.n, seed=args.seed)
    for name in names:
      value, se, flags, secs = run_estimator(name, x, y, args)
      rows.append((task, name, value, se, flags, secs))
      print(f"  {task.name:38s} {name:9s} {value:8.3f} (true {task.mi:.3f}) "
            f"{secs:6.1f} s {' '.join(flags)}", flush=True)

  with open(os.path.join(args.out, "accuracy.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["task", "dim_x", "dim_y", "true_mi", "estimator", "estimate",
                "stderr", "flags", "seconds"])
    for task, name, value, se, flags, secs in rows:
      w.writerow([task.name, task.dim_x, task.dim_y, f"{task.mi:.4f}", name,
                  f"{value:.4f}", f"{se:.4f}", " ".join(flags), f"{secs:.2f}"])

  table = format_table(os.path.join(args.out, "accuracy.csv"))
  with open(os.path.join(args.out, "accuracy.md"), "w") as f:
    f.write(table + "\n")
  print("\n" + table)


if __name__ == "__main__":
  main()
