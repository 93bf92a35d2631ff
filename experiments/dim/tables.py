"""Tables (markdown) and the prior-matching figure from full_mnist.py's results.

  python experiments/dim/tables.py experiments/dim/results

Prints the tables of docs/dim.md and writes docs/figures/dim_prior_matching.png.
"""

import glob
import json
import os
import sys

import numpy as np

ROWS = [("G", "DIM(G), no prior"), ("G_prior", "DIM(G), prior (gamma 1)"),
        ("L", "DIM(L), no prior"), ("L_prior", "DIM(L), prior (gamma 0.1)"),
        ("LG", "DIM(L+G), no prior"), ("LG_prior", "DIM(L+G), prior (gamma 0.1)"),
        ("L_prior_nce", "DIM(L) InfoNCE, prior"), ("L_prior_dv", "DIM(L) DV, prior"),
        ("L_prior_minimax", "DIM(L), prior minimax, no GP"),
        ("L_prior_plain", "DIM(L), prior, former critic"),
        ("L_prior_occlusion", "DIM(L), prior, occlusion 14x14"),
        ("L_prior_b16", "DIM(L), prior, batch 16"),
        ("L_prior_b32", "DIM(L), prior, batch 32"),
        ("L_prior_b128", "DIM(L), prior, batch 128"),
        ("L_prior_b16_n25600", "DIM(L), prior, batch 16, 1,600 steps"),
        ("L_prior_b32_n25600", "DIM(L), prior, batch 32, 800 steps"),
        ("L_prior_nce_b16_n25600", "DIM(L) InfoNCE, prior, batch 16, 1,600 steps"),
        ("P", "prior only (gamma 1), non-saturating + GP"),
        ("P_minimax", "prior only (gamma 1), minimax, no GP"),
        ("random", "random encoder (BN calibrated)")]


def ms(values, scale=1.0, digits=1):
  v = scale * np.asarray(values, np.float64)
  if np.all(np.isnan(v)):
    return "-"
  return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v):.{digits}f}"


def load(folder):
  out = {}
  for path in glob.glob(os.path.join(folder, "*.json")):
    if path.endswith(".train.json") or path.endswith("code_stats.json"):
      continue
    with open(path) as f:
      r = json.load(f)
    out[r["variant"]] = r
  return out


def col(r, key):
  return [res.get(key, np.nan) for res in r["results"]]


def chunk_curve(r, key):
  """[chunks, seeds]: full_mnist.py stores, per chunk of `chunk` steps, the
  mean of each seed's training metric over the chunk."""
  vals = [c[key] for c in r.get("curves", []) if key in c]
  return np.asarray(vals, np.float64) if vals else None


def final_train(r, key):
  """Mean over seeds of the last chunk's (last 50 steps') mean."""
  v = chunk_curve(r, key)
  return float(v[-1].mean()) if v is not None else np.nan


def weights(r):
  st = r["settings"]
  return f"{st['alpha']:g}, {st['beta']:g}, {st['gamma']:g}"


def probe_cells(r):
  return [ms(col(r, f"linear/{f}"), 100) for f in ("conv", "fc", "y")] + [
      ms(col(r, "mlp/y"), 100)]


def suite_cells(r):
  return [ms(col(r, "mi_xy"), digits=2), ms(col(r, "ndm_heldout_acc"), digits=3),
          ms(col(r, "prior_js"), digits=3), ms(col(r, "prior_heldout_acc"), digits=3)]


def last_chunks(r, key, n):
  """[n, seeds]: the last n chunk means of a training metric."""
  v = chunk_curve(r, key)
  return None if v is None else v[-n:]


def bound_key(r):
  return "mi_local" if r["settings"]["beta"] else "mi_global"


def nonfinite(r):
  v = chunk_curve(r, "nonfinite_steps")
  return "0 (log)" if v is None else f"{int(v.sum())}"


GLP = ["G", "G_prior", "L", "L_prior", "LG", "LG_prior", "P", "P_minimax", "random"]
EST = [("L_prior", "JSD"), ("L_prior_nce", "InfoNCE (locations)"), ("L_prior_dv", "DV")]
NEG = ["L_prior_b16", "L_prior_b16_n25600", "L_prior_b32_n25600", "L_prior",
       "L_prior_nce_b16_n25600", "L_prior_nce", "L_prior_occlusion"]


def code_stats(folder, names):
  """The table of code_stats.py's output (held-out marginals of sigmoid(Y))."""
  path = os.path.join(folder, "code_stats.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    cs = json.load(f)
  print()
  print(f"| variant (step 400) | gamma | mean per-unit JS(sigmoid(Y_k) ‖ U[0,1]), nats | mean abs corr between units | mean ‖Y‖ | sat. frac | co-trained D acc, held-out codes |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for key, name in ROWS:
    if key not in cs or key == "random":
      continue
    v = cs[key]
    st = full_settings(key)
    gamma = f"{st['gamma']:g}" if st else "-"
    print(f"| {name} | {gamma} | {ms(v['heldout_marginal_js'], digits=3)} | "
          f"{ms(v['heldout_abs_corr'], digits=3)} | {ms(v['heldout_y_norm'], digits=1)} | "
          f"{ms(v['heldout_saturated'], digits=4)} | "
          f"{ms(v.get('heldout_cotrained_acc', [np.nan]), digits=3)} |")
  print(f"| {cs['_settings']['heldout']} true U[0,1]^64 samples | - | "
        f"{cs['_uniform_floor']:.4f} | - | - | - | - |")


def full_settings(key):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import full_mnist  # pylint: disable=g-import-not-at-top
  return full_mnist.VARIANTS.get(key)


def main(folder):
  runs = load(folder)
  names = dict(ROWS)
  print("| variant | alpha, beta, gamma | steps x batch | conv lin | fc lin | Y lin | Y MLP | I(X;Y) MINE | NDM held-out acc | JS(codes‖U) | held-out D acc |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for key in GLP:
    if key not in runs:
      continue
    r = runs[key]
    batch = r["settings"].get("batch_size", 64)
    w = "-" if key == "random" else weights(r)
    print(f"| {names[key]} | {w} | {r['steps']} x {batch} | "
          + " | ".join(probe_cells(r) + suite_cells(r)) + " |")
  print()
  print("| estimator (DIM(L), prior gamma 0.1) | conv lin | fc lin | Y lin | Y MLP | final train bound, mean ± std over seeds | std of the bound over its last 4 chunks (mean over seeds) | non-finite steps | I(X;Y) MINE | NDM (DV) | NDM held-out acc |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for key, est in EST:
    if key not in runs:
      continue
    r = runs[key]
    last = last_chunks(r, "mi_local", 4)
    print(f"| {est} | " + " | ".join(probe_cells(r)) + f" | {ms(last[-1], digits=3)} | "
          f"{np.mean(np.std(last, axis=0)):.3f} | {nonfinite(r)} | "
          f"{ms(col(r, 'mi_xy'), digits=2)} | {ms(col(r, 'ndm'), digits=0)} | "
          f"{ms(col(r, 'ndm_heldout_acc'), digits=3)} |")
  print()
  print("| variant (DIM(L), JSD unless named, prior gamma 0.1) | batch | steps | negatives per code, (B-1) M | images seen | conv lin | fc lin | Y lin | final train bound | non-finite steps | train wall s / CPU s (3 seeds) |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for key in NEG:
    if key not in runs:
      continue
    r = runs[key]
    b = r["settings"].get("batch_size", 64)
    cpu = r.get("train_cpu_seconds")
    print(f"| {names[key]} | {b} | {r['steps']} | {(b - 1) * 49} | {r['steps'] * b} | "
          + " | ".join(probe_cells(r)[:3])
          + f" | {ms(last_chunks(r, 'mi_local', 1)[-1], digits=3)} | {nonfinite(r)} | "
          f"{r['train_seconds']:.0f} / {'-' if cpu is None else f'{cpu:.0f}'} |")
  code_stats(folder, names)
  print()
  trained = {}
  for path in glob.glob(os.path.join(folder, "*.train.json")):
    with open(path) as f:
      r = json.load(f)
    trained[r["variant"]] = r
  print("| variant (training side) | train bound(s), last 50 steps, mean ± std over seeds | D_hat | D acc | mean ‖Y‖ | sat. frac | train wall s |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for key, name in ROWS:
    r = trained.get(key)
    if r is None or not r["curves"]:
      continue
    def last(k):
      v = chunk_curve(r, k)
      return None if v is None else v[-1]
    bounds = ", ".join(f"{b} {ms(last(b), digits=3)}" for b in ("mi_local", "mi_global")
                       if last(b) is not None)
    cells = [ms(last(k), digits=3) if last(k) is not None else "-"
             for k in ("prior_d", "prior_acc", "y_norm", "code_saturated")]
    print(f"| {name} | {bounds or '-'} | " + " | ".join(cells)
          + f" | {r['train_seconds']:.0f} |")
  print()
  for key, r in sorted(runs.items()):
    print(f"- {key}: train {r['train_seconds']:.0f} s, eval {r['eval_seconds']:.0f} s "
          f"({len(r['seeds'])} seeds)")
  figure(trained, "docs/figures/dim_prior_matching.png")


def figure(runs, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
  colors = plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2]
  for i, (key, name) in enumerate(ROWS):
    r = runs.get(key)
    if r is None or not r.get("curves"):
      continue
    for ax, metric in zip(axes, ("prior_acc", "y_norm", "code_saturated")):
      v = chunk_curve(r, metric)
      if v is None:
        continue
      steps = 50 * np.arange(1, len(v) + 1)
      color = colors[i % len(colors)]
      ax.plot(steps, v.mean(1), label=name, lw=1.2, marker=".", color=color)
      ax.fill_between(steps, v.min(1), v.max(1), color=color, alpha=0.15)
  axes[0].set_title("prior D accuracy (training batches)")
  axes[1].set_title("mean ||Y||")
  axes[2].set_title("fraction of sigmoid(Y) outside [0.01, 0.99]")
  for ax in axes:
    ax.set_xlabel("step")
  for ax in axes:
    ax.legend(fontsize=6)
  fig.suptitle("DIM on full MNIST: means over each 50 steps, mean (line) and "
               "range (band) over 3 seeds")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  print(f"wrote {path}")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "experiments/dim/results")
