"""Does DIM's prior term move the codes toward U[0,1]^d?  Curves vs step.

DIM(L) on full MNIST (the reduced model of `full_mnist.py`) for each gamma,
3 seeds vmapped; after every chunk of training steps, on held-out test
images (`--heldout` of them) and for each seed:

  heldout_d_acc     balanced accuracy of a freshly trained discriminator
                    between sigmoid(Y) and U[0,1]^d samples (MLP 64-64,
                    trained on one half, read out on the other:
                    `dim_suite.prior_statistics`); 0.5 = indistinguishable
  heldout_js        that discriminator's JS bound (nats, <= log 2)
  heldout_cotrained_acc  the co-trained prior discriminator's accuracy on
                    held-out codes vs fresh prior samples
  heldout_marginal_js    mean over the d units of the plug-in JS (nats)
                    between the 20-bin histogram of sigmoid(Y_k) and the
                    uniform one (`dim_suite.marginal_uniform_js`;
                    `marginal_js_floor`: the same statistic for as many
                    true U[0,1] samples)
  heldout_abs_corr  mean |correlation| between two units of sigmoid(Y)
                    (`dim_suite.mean_abs_correlation`; 0 under the prior)
  heldout_y_norm, heldout_saturated   mean ||Y||, fraction of sigmoid(Y)
                    outside [0.01, 0.99]
  grad_mi, grad_prior, grad_cos   on one fixed training batch, the norms of
                    the encoder's gradient from the MI term and from the
                    prior's encoder term at weight 1, and their cosine
                    (`encoder_grad_norms`)

`--encoder_loss none`: D trained, the encoder gets nothing from it (the
gamma = 0 control of the co-trained D). `--plot DIR --long`: co-trained vs
fresh D and the gradient ratio (docs/figures/dim_prior_long.png):

  python experiments/dim/prior_curve.py --gammas 10 --seeds 0 --steps 1500 \
      --chunk 50 --fresh_every 5 --tag long --out experiments/dim/results/prior_long
  python experiments/dim/prior_curve.py --gammas 10 --seeds 1,2 --steps 1500 \
      --chunk 50 --fresh_every 5 --tag long --out experiments/dim/results/prior_long/seeds12
  python experiments/dim/prior_curve.py --plot experiments/dim/results/prior_long \
      --long --band std --figure docs/figures/dim_prior_long.png

(--plot reads FOLDER/*.json and FOLDER/*/*.json and merges the files of one
run name along the seed axis, so seeds run in separate processes form one
curve; the commands of each figure are in docs/dim.md.)

  python experiments/dim/prior_curve.py --gammas 0,0.1,1 --steps 400 \
      --tag base --out experiments/dim/results/prior_curve
  python experiments/dim/prior_curve.py --plot experiments/dim/results/prior_curve

Writes OUT/TAG_gGAMMA.json (settings, per-chunk curves incl. the training
metrics of `full_mnist.train`), and OUT/TAG_gGAMMA.partial.json after every
chunk until then (the plot reads it for a stopped run).
"""

import argparse
import glob
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import full_mnist  # pylint: disable=g-import-not-at-top,wrong-import-position
from mi_jax import data  # pylint: disable=g-import-not-at-top,wrong-import-position
from mi_jax.evaluation import dim_suite  # pylint: disable=g-import-not-at-top,wrong-import-position
from mi_jax.training import merge_model, split_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from mi_jax.objectives import dim  # pylint: disable=g-import-not-at-top,wrong-import-position

_GRAD_FNS = {}


def encoder_grad_norms(model, images_BxHxWxC, key, settings):
  """How hard each term pulls on the encoder, on one training batch.

    grad_mi    = d/d(encoder) of -(alpha I_G + beta I_L)   (the MI terms)
    grad_prior = d/d(encoder) of -E log D(sigmoid(Y))      (the non-saturating
                 encoder term at weight 1; the loss adds gamma times it)

  Returns ||grad_mi||, ||grad_prior|| (global norms over the encoder's
  parameters, BatchNorm in training mode as in the train step) and their
  cosine; gamma * ||grad_prior|| / ||grad_mi|| is the prior's share of the
  raw encoder gradient before Adam's per-parameter scaling.
  """
  graphdef, params, rest = split_model(model)
  if graphdef not in _GRAD_FNS:
    mi_loss = dim.make_dim_loss(
        estimator=settings.get("estimator", "jsd"), alpha=settings["alpha"],
        beta=settings["beta"], gamma=0.0)

    def grads(p, r, images, k):
      def f_mi(q, r):  # r passed in: BatchNorm updates its statistics
        m = merge_model(graphdef, q, r)
        m.train()
        return mi_loss(m, {"image": images}, k)[0]

      def f_prior(q, r):
        m = merge_model(graphdef, q, r)
        m.train()
        y_BxD = m.encoder(images)[2]
        return jnp.mean(jax.nn.softplus(-m.prior_disc(jax.nn.sigmoid(y_BxD))))
      g_mi = jax.tree.leaves(jax.grad(f_mi)(p, r)["encoder"])
      g_pr = jax.tree.leaves(jax.grad(f_prior)(p, r)["encoder"])
      dot = sum(jnp.sum(a * b) for a, b in zip(g_mi, g_pr))
      n_mi = jnp.sqrt(sum(jnp.sum(a * a) for a in g_mi))
      n_pr = jnp.sqrt(sum(jnp.sum(b * b) for b in g_pr))
      return n_mi, n_pr, dot / (n_mi * n_pr)
    _GRAD_FNS[graphdef] = jax.jit(grads)
  n_mi, n_pr, cos = _GRAD_FNS[graphdef](params, rest, images_BxHxWxC, key)
  return {"grad_mi": float(n_mi), "grad_prior": float(n_pr),
          "grad_cos": float(cos)}


def heldout_stats(model, images, seed, fresh_steps):
  y_NxD = np.asarray(dim_suite.encoder_features(model.encoder, images)["y"],
                     np.float64)
  u_NxD = 1.0 / (1.0 + np.exp(-y_NxD))
  out = {"heldout_marginal_js": dim_suite.marginal_uniform_js(u_NxD),
         "heldout_abs_corr": dim_suite.mean_abs_correlation(u_NxD),
         "heldout_y_norm": float(np.mean(np.linalg.norm(y_NxD, axis=1))),
         "heldout_saturated": float(np.mean(np.abs(y_NxD) > np.log(99.0)))}
  prior_NxD = np.random.default_rng(seed + 7).uniform(size=u_NxD.shape)
  if model.prior_disc is not None:
    d_code = np.asarray(model.prior_disc(jax.numpy.asarray(u_NxD, np.float32)))
    d_prior = np.asarray(model.prior_disc(jax.numpy.asarray(prior_NxD, np.float32)))
    out["heldout_cotrained_acc"] = float(
        0.5 * (np.mean(d_prior > 0) + np.mean(d_code < 0)))
  if fresh_steps:
    st = dim_suite.prior_statistics(y_NxD, seed=seed, steps=fresh_steps)
    out["heldout_d_acc"] = st["prior_heldout_acc"]
    out["heldout_js"] = st["prior_js"]
  return out


def run(args):
  train_set = data.load_arrays("mnist", "train")
  test_set = data.load_arrays("mnist", "test")
  images = np.asarray(train_set["image"], np.float32)
  heldout = np.asarray(test_set["image"][:args.heldout], np.float32)
  grad_batch = jnp.asarray(images[:64])  # a fixed training batch
  seeds = [int(s) for s in args.seeds.split(",")]
  floor = dim_suite.marginal_uniform_js(
      np.random.default_rng(0).uniform(size=(args.heldout, 64)))
  os.makedirs(args.out, exist_ok=True)
  for gamma in [float(g) for g in args.gammas.split(",")]:
    settings = dict(alpha=args.alpha, beta=args.beta, gamma=gamma,
                    prior_gp=args.gp, prior_encoder_loss=args.encoder_loss)
    if args.disc_lr:
      settings["disc_lr"] = args.disc_lr
    if args.disc_hidden:
      settings["prior_hidden_dims"] = tuple(
          int(h) for h in args.disc_hidden.split("-"))

    name = f"{args.tag}_g{gamma:g}"
    t0 = time.time()

    def record(curves, steps, train_s, name=name, settings=settings, t0=t0):
      """OUT/NAME.json when done, OUT/NAME.partial.json after every chunk."""
      path = os.path.join(args.out, f"{name}{'' if steps == args.steps else '.partial'}.json")
      with open(path, "w") as f:
        json.dump({"name": name, "settings": {k: (list(v) if isinstance(v, tuple) else v)
                                              for k, v in settings.items()},
                   "seeds": seeds, "steps": steps, "chunk": args.chunk,
                   "lr": args.lr, "heldout": args.heldout,
                   "fresh_steps": args.fresh_steps, "fresh_every": args.fresh_every,
                   "marginal_js_floor": floor, "encoder": full_mnist.ENCODER,
                   "critic": full_mnist.CRITIC, "wall_seconds": time.time() - t0,
                   "train_seconds": train_s, "curves": curves}, f)

    def on_chunk(c, graphdef, states, curves, settings=settings, record=record):
      per_seed = []
      for i, seed in enumerate(seeds):
        st = jax.tree.map(lambda x, i=i: x[i], states)
        model = nnx.merge(graphdef, st.params, st.rest)
        model.eval()
        fresh = args.fresh_steps if (c + 1) % args.fresh_every == 0 else 0
        per_seed.append(heldout_stats(model, heldout, seed, fresh))
        if model.prior_disc is not None and (args.beta or args.alpha):
          model.train()
          per_seed[-1].update(encoder_grad_norms(
              model, grad_batch, jax.random.key(seed), settings))
      stats = {k: [r.get(k, np.nan) for r in per_seed] for k in per_seed[0]}
      if (c + 1) * args.chunk < args.steps:  # so far, in case of a stop
        record([*curves[:-1], {**curves[-1], **stats}], (c + 1) * args.chunk,
               None)  # train_seconds: known at the end only
      return stats

    _, _, curves, train_s = full_mnist.train(
        settings, images, seeds=seeds, steps=args.steps, chunk=args.chunk,
        lr=args.lr, on_chunk=on_chunk)
    record(curves, args.steps, train_s)
    print(f"wrote {name} ({time.time() - t0:.0f} s)", flush=True)


CURVES = [("heldout_d_acc", "fresh held-out D accuracy"),
          ("heldout_marginal_js", "mean per-unit JS to U[0,1] (20 bins)"),
          ("heldout_abs_corr", "mean |corr| between units"),
          ("heldout_y_norm", "mean ||Y|| (held-out)"),
          ("prior_acc", "co-trained D accuracy (train batches)")]
# --long: the co-trained and fresh discriminators side by side, and how hard
# the prior pulls on the encoder relative to the MI term.
LONG_CURVES = [("prior_acc", "co-trained D accuracy (train batches)"),
               ("heldout_cotrained_acc", "co-trained D accuracy (held-out codes)"),
               ("heldout_d_acc", "fresh D accuracy (held-out codes)"),
               ("heldout_marginal_js", "mean per-unit JS to U[0,1] (20 bins)"),
               ("grad_ratio", "||grad prior|| / ||grad MI|| (encoder, weight 1)")]


def _curve(r, key):
  """[chunks, seeds] of a curve key; grad_ratio from its two norms."""
  nan = [np.nan] * len(r["seeds"])
  if key == "grad_ratio":
    return (np.asarray([c.get("grad_prior", nan) for c in r["curves"]], np.float64)
            / np.asarray([c.get("grad_mi", nan) for c in r["curves"]], np.float64))
  return np.asarray([c.get(key, nan) for c in r["curves"]], np.float64)


def _load_runs(folder):
  """Runs of FOLDER/*.json and FOLDER/*/*.json, merged by name over seeds.

  A run's seeds may sit in several files (e.g. seed 0 in FOLDER/long_g1.json,
  seeds 1, 2 in FOLDER/seeds12/long_g1.json): files with the same `name` are
  concatenated along the seed axis of every curve (the chunks must agree);
  `wall_seconds` and the final `cpu_seconds` become per-file lists. A
  NAME.partial.json (a stopped run) is used only when NAME.json is absent.
  """
  by_name = {}
  paths = sorted(glob.glob(os.path.join(folder, "*.json"))
                 + glob.glob(os.path.join(folder, "*", "*.json")))
  for p in paths:
    final = p.replace(".partial.json", ".json")
    if p.endswith(".partial.json") and os.path.exists(final):
      continue
    with open(p) as f:
      r = json.load(f)
    if "settings" not in r:  # a partial file of the former format
      continue
    by_name.setdefault(r["name"], []).append(r)
  runs = []
  for name, parts in by_name.items():
    chunks = min(len(r["curves"]) for r in parts)
    for r in parts:
      if (r["chunk"], r["settings"]) != (parts[0]["chunk"], parts[0]["settings"]):
        raise ValueError(f"{name}: files with different settings or chunks")
    curves = []
    for c in range(chunks):
      keys = sorted({k for r in parts for k in r["curves"][c]})
      entry = {}
      for k in keys:
        vals = []
        for r in parts:
          v = r["curves"][c].get(k, [np.nan] * len(r["seeds"]))
          vals.extend(v if isinstance(v, list) else [v] * len(r["seeds"]))
        entry[k] = vals
      curves.append(entry)
    runs.append({**parts[0], "seeds": [s for r in parts for s in r["seeds"]],
                 "steps": min(r["steps"] for r in parts), "curves": curves,
                 "wall_seconds": [r["wall_seconds"] for r in parts],
                 "cpu_per_file": [r["curves"][-1].get("cpu_seconds") if r["curves"]
                                  else None for r in parts]})
  return runs


def plot(folder, path, curves=None, band="range"):
  """Figure PATH of the runs in FOLDER (line: mean over seeds; band: the
  range over seeds, or mean +- std with band="std"), and a markdown table of
  the last chunk (mean +- std over seeds, ddof 0)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = _load_runs(folder)
  curves = curves or CURVES
  fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.2))
  for r in runs:
    steps = r["chunk"] * np.arange(1, len(r["curves"]) + 1)
    label = f"{r['name']} ({r['settings'].get('prior_encoder_loss', 'non_saturating')})"
    for ax, (key, title) in zip(axes, curves):
      v = _curve(r, key)
      ok = ~np.all(np.isnan(v), axis=1)
      if not ok.any():
        continue
      mean = np.nanmean(v[ok], 1)
      if band == "std":
        lo, hi = mean - np.nanstd(v[ok], 1), mean + np.nanstd(v[ok], 1)
      else:
        lo, hi = np.nanmin(v[ok], 1), np.nanmax(v[ok], 1)
      line, = ax.plot(steps[ok], mean, marker=".",
                      label=f"{label}, {len(r['seeds'])} seed(s)")
      ax.fill_between(steps[ok], lo, hi, color=line.get_color(), alpha=0.15)
      ax.set_title(title, fontsize=9)
      ax.set_xlabel("step")
  keys = [key for key, _ in curves]
  axes[keys.index("heldout_marginal_js")].axhline(
      runs[0]["marginal_js_floor"], color="k", ls=":", lw=1,
      label="true U[0,1] samples")
  for ax, key in zip(axes, keys):
    if key.endswith("acc"):
      ax.set_ylim(0.45, 1.02)
      ax.axhline(0.5, color="k", ls=":", lw=1)
    if key == "grad_ratio":
      ax.set_yscale("log")
  for ax in axes:
    ax.legend(fontsize=7)
  fig.suptitle("DIM(L) on full MNIST, prior term: held-out statistics vs step "
               f"(line: mean, band: {'mean ± std' if band == 'std' else 'range'}"
               " over seeds)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f"wrote {path}")
  keys = ["heldout_marginal_js", "heldout_abs_corr", "heldout_y_norm",
          "heldout_saturated", "heldout_d_acc", "heldout_js",
          "heldout_cotrained_acc", "prior_acc", "grad_ratio"]
  print("| run | steps | seeds | " + " | ".join(keys) + " | wall s | train CPU s |")
  print("| --- | --- | --- | " + " | ".join("---" for _ in keys) + " | --- | --- |")
  for r in runs:
    cells = []
    for key in keys:  # the last chunk that has the statistic
      vals = [row for row in _curve(r, key) if not np.all(np.isnan(row))]
      v = np.asarray(vals[-1], np.float64) if vals else None
      cells.append("-" if v is None else f"{v.mean():.3f} ± {v.std():.3f}")
    walls = " + ".join(f"{w:.0f}" for w in r["wall_seconds"])
    cpus = " + ".join("-" if c is None else f"{np.max(c):.0f}"
                      for c in r["cpu_per_file"])  # per file (one process each)
    seeds = ",".join(str(s) for s in r["seeds"])
    print(f"| {r['name']} ({r['settings'].get('prior_encoder_loss', 'non_saturating')}) | {r['steps']} | {seeds} | " + " | ".join(cells)
          + f" | {walls} | {cpus} |")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--gammas", default="0,0.1,1")
  p.add_argument("--alpha", type=float, default=0.0)
  p.add_argument("--beta", type=float, default=1.0)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--chunk", type=int, default=50)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--disc_lr", type=float, default=None)
  p.add_argument("--disc_hidden", default="", help="e.g. 1000-200 (default)")
  p.add_argument("--gp", type=float, default=1.0)
  p.add_argument("--encoder_loss", default="non_saturating")
  p.add_argument("--heldout", type=int, default=2000)
  p.add_argument("--fresh_steps", type=int, default=300)
  p.add_argument("--fresh_every", type=int, default=2)
  p.add_argument("--tag", default="base")
  p.add_argument("--out", default="experiments/dim/results/prior_curve")
  p.add_argument("--plot", default="", help="folder of results to plot")
  p.add_argument("--figure", default="docs/figures/dim_prior_curve.png")
  p.add_argument("--long", action="store_true",
                 help="with --plot: co-trained vs fresh D and gradient ratio")
  p.add_argument("--band", default="range", choices=["range", "std"],
                 help="with --plot: band over seeds")
  args = p.parse_args(argv)
  if args.plot:
    plot(args.plot, args.figure, LONG_CURVES if args.long else None,
         band=args.band)
  else:
    run(args)


if __name__ == "__main__":
  main()
