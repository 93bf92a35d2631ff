"""Seed sweeps of DGI and InfoGraph: many full training runs as one vmapped program.

The engine (`mi-jax train`) trains one seed for `config.steps` steps. The
papers' tables need more: DGI stops each run early on its training loss
(patience 20) and reports mean +- std over runs; InfoGraph averages over
folds and training seeds. Here every seed's state is stacked and the
library's train step runs under `mi_jax.training.vmap_over_seeds`, then the
same evaluation protocols as the engine's plug-ins score each seed's
embeddings beside the baselines (raw features, random-init encoder, and for
TU sets a Weisfeiler-Lehman kernel SVM).

  python -m experiments.graphs.seeds --config experiments/configs/dgi_cora.py --seeds 10
  python -m experiments.graphs.seeds --config experiments/configs/infograph_mutag.py --seeds 5

`--nested` (with `--every_epoch` embeddings, or `--rescore` of a file saved
with them) chooses the epoch per outer fold by nested cross-validation: the
pair (epoch, C) with the best inner-CV accuracy on that fold's training
graphs, scored once on its test graphs (`svm_kfold_nested`). It is reported
beside the epoch fixed in advance (the issue's protocol), not instead of it.

  python -m experiments.graphs.seeds --config experiments/configs/infograph_tu.py:MUTAG --seeds 5 --every_epoch --train_only --save_embeddings ig.npz
  python -m experiments.graphs.seeds --config experiments/configs/infograph_tu.py:MUTAG --rescore ig.npz --nested

`--select_epoch_on_test` adds a labelled DIAGNOSTIC (never a result): every
epoch's embeddings scored on the test folds and the best epoch picked, as
InfoGraph's reference reports its figure, to measure what that selection is
worth.
"""
import argparse
import functools
import json
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax.data import graphs
from mi_jax.evaluation.graph_kernels import wl_kernel
from mi_jax.evaluation.node_classification import node_classification
from mi_jax.evaluation.svm import svm_kfold, svm_kfold_nested
from mi_jax.objectives import dgi, infograph
from mi_jax.training import (init_train_states, make_train_step, merge_model,
                             vmap_over_seeds)
from mi_jax.training.config import load_config


def dgi_fit_seeds(batch, in_dim: int, seeds: Sequence[int], *, hidden: int = 512,
              learning_rate: float = 1e-3, patience: int = 20,
              max_epochs: int = 2000, chunk: int = 25):
  """Trains DGI for every seed at once (vmapped) with early stopping.

  Per seed, as in the reference: each epoch is one full-graph step with a
  fresh corruption (key fold_in(key(seed), t)); the loss is recorded before
  the update, the parameters with the lowest loss so far are kept, and the
  seed stops once the loss has not improved for `patience` epochs (its state
  is frozen while the others go on). Steps run `chunk` at a time in a
  `lax.scan`.

  Returns:
    dict: `embeddings` f32 [S, N, D] from the best parameters, `init_embeddings`
    [S, N, D] from the initial (random) parameters, `best_loss` [S],
    `best_epoch` [S], `epochs` [S] (epochs run), `losses` [T, S].
  """
  tx = optax.adam(learning_rate)
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  graphdef, states = init_train_states(
      lambda k: dgi.DGIModel(in_dim, hidden, rngs=nnx.Rngs(k)), tx, keys_S)
  step = vmap_over_seeds(make_train_step(graphdef, tx, dgi.dgi_loss))
  # The batch is an argument, never a closed-over constant: XLA would try
  # to constant-fold the gathers over the whole graph.
  embed = jax.jit(jax.vmap(
      lambda p, r, b: merge_model(graphdef, p, r).embed(b),
      in_axes=(0, 0, None)))
  init_emb = embed(states.params, states.rest, batch)
  s = len(seeds)
  carry = (states, jax.tree.map(jnp.copy, states.params), jnp.full((s,), jnp.inf),
           jnp.zeros((s,), jnp.int32), jnp.zeros((s,), jnp.int32),
           jnp.zeros((s,), bool), jnp.zeros((s,), jnp.int32))

  @functools.partial(jax.jit, donate_argnums=0)
  def run_chunk(carry, batch, t0):
    def body(carry, t):
      states, best, best_loss, best_epoch, wait, stopped, epochs = carry
      step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_S)
      new_states, metrics = step(states, batch, step_keys)
      loss_S = metrics["loss"]
      active = ~stopped
      better = active & (loss_S < best_loss)
      pick = lambda m: lambda a, b: jnp.where(  # noqa: E731
          m.reshape(m.shape + (1,) * (a.ndim - 1)), a, b)
      best = jax.tree.map(pick(better), states.params, best)
      best_loss = jnp.where(better, loss_S, best_loss)
      best_epoch = jnp.where(better, t, best_epoch)
      wait = jnp.where(better, 0, jnp.where(active, wait + 1, wait))
      now_stopped = stopped | (wait >= patience) | (t + 1 >= max_epochs)
      go = active & ~(wait >= patience)
      states = jax.tree.map(pick(go), new_states, states)
      epochs = epochs + active
      return ((states, best, best_loss, best_epoch, wait, now_stopped,
               epochs), jnp.where(active, loss_S, jnp.nan))
    return jax.lax.scan(body, carry, t0 + jnp.arange(chunk))

  losses = []
  for t0 in range(0, max_epochs, chunk):
    carry, loss_TxS = run_chunk(carry, batch, t0)
    losses.append(np.asarray(loss_TxS))
    if bool(jnp.all(carry[5])):
      break
  states, best, best_loss, best_epoch, _, _, epochs = carry
  return {
      "embeddings": np.asarray(embed(best, states.rest, batch)),
      "init_embeddings": np.asarray(init_emb),
      "best_loss": np.asarray(best_loss), "best_epoch": np.asarray(best_epoch),
      "epochs": np.asarray(epochs), "losses": np.concatenate(losses),
  }


def embed_dataset(graphdef, params, rest, dataset, budget, batch_size):
  """Graph embeddings [S, G, D] of every graph (eval mode: BN running stats)."""

  @jax.jit
  def embed(params, rest, batch):
    def one(p, r):
      model = merge_model(graphdef, p, r)
      model.eval()
      return model.embed(batch)
    return jax.vmap(one)(params, rest)

  out = []
  for batch, ids in graphs.ordered_batches(dataset, budget, batch_size):
    out.append(np.asarray(embed(params, rest, batch))[:, :len(ids)])
  return np.concatenate(out, axis=1)


def infograph_fit_seeds(dataset, seeds: Sequence[int], *, hidden: int = 32,
              num_layers: int = 5, batch_size: int = 128, epochs: int = 20,
              learning_rate: float = 1e-3, log_every: int = 0,
              reshuffle: bool = False, every_epoch: bool = False):
  """Trains InfoGraph for every seed at once (vmapped), `epochs` full epochs.

  Seed s initialises its model with key(s) and visits the graphs in its own
  order (`GraphBatchIterator(seed=s)`, last smaller batch kept); with
  `reshuffle=False` (the reference: one shuffle, then a DataLoader without
  shuffling) every epoch repeats the same batches in the same order. All
  seeds share one padded budget.
  Returns {"embeddings": [S, G, D] after the last epoch (fixed in advance),
  "init_embeddings": [S, G, D] at initialisation, "losses": [T, S]}, and
  with `every_epoch` also "epoch_embeddings": [epochs + 1, S, G, D] after
  epochs 0 (= init), 1, ..., `epochs` (for the test-fold-selection
  diagnostic only).
  """
  tx = optax.adam(learning_rate)
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  graphdef, states = init_train_states(
      lambda k: infograph.InfoGraphModel(dataset.num_features, hidden, num_layers,
                               rngs=nnx.Rngs(k)), tx, keys_S)
  iters = [graphs.GraphBatchIterator(dataset, batch_size, seed=int(s),
                                     reshuffle=reshuffle) for s in seeds]
  budget = iters[0].budget
  init_emb = embed_dataset(graphdef, states.params, states.rest, dataset,
                           budget, batch_size)
  step = jax.jit(vmap_over_seeds(make_train_step(graphdef, tx, infograph.infograph_loss),
                                 batch_axis=0), donate_argnums=0)
  losses, per_epoch = [], [init_emb]
  steps_per_epoch = iters[0].steps_per_epoch
  for t in range(epochs * steps_per_epoch):
    batch = jax.tree.map(lambda *xs: np.stack(xs), *[next(it) for it in iters])
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_S)
    states, metrics = step(states, batch, step_keys)
    losses.append(np.asarray(metrics["loss"]))
    if log_every and t % log_every == 0:
      print(f"step {t} loss {losses[-1].round(4).tolist()}", flush=True)
    last = t + 1 == epochs * steps_per_epoch   # embedded below in any case
    if every_epoch and (t + 1) % steps_per_epoch == 0 and not last:
      per_epoch.append(embed_dataset(graphdef, states.params, states.rest,
                                     dataset, budget, batch_size))
  out = {"embeddings": embed_dataset(graphdef, states.params, states.rest,
                                     dataset, budget, batch_size),
         "init_embeddings": init_emb, "losses": np.stack(losses)}
  if every_epoch:
    out["epoch_embeddings"] = np.stack(per_epoch[:epochs] + [out["embeddings"]])
  return out


def _mean_std(values):
  a = np.asarray(values, np.float64)
  return {"mean": float(a.mean()), "std": float(a.std()), "values": a.tolist()}


def run_dgi(config, seeds):
  """DGI on a Planetoid graph: every seed, then node classification."""
  c = config.dgi
  data = graphs.load_planetoid(c.dataset, datasets_dir=config.get("datasets_dir") or None)
  batch = graphs.planetoid_batch(data, normalize=c.row_normalize)
  t0 = time.time()
  out = dgi_fit_seeds(batch, data["features"].shape[1], seeds, hidden=c.hidden,
                      learning_rate=config.lr, patience=c.patience,
                      max_epochs=c.max_epochs)
  train_s = time.time() - t0
  n = len(data["labels"])
  split = (data["labels"], data["train_idx"], data["val_idx"], data["test_idx"])
  res = {"train_s": train_s, "epochs": out["epochs"].tolist(),
         "best_epoch": out["best_epoch"].tolist()}
  for key in ("embeddings", "init_embeddings"):
    runs = [node_classification(e[:n], *split) for e in out[key]]
    res[key] = _mean_std([r["test_acc"] for r in runs])
    res[key]["C"] = [r["C"] for r in runs]
  raw = data["features"].astype(np.float32)
  raw = graphs.row_normalize(raw) if c.row_normalize else raw
  res["raw"] = node_classification(raw, *split)
  res["total_s"] = time.time() - t0
  return res


def histogram_features(dataset, budget, batch_size, num_tags):
  """Tag + degree histogram of every graph, [G, num_tags + 33] (raw baseline)."""
  raw = jax.jit(infograph.raw_histogram(num_tags))
  out = [np.asarray(raw(jax.tree.map(lambda x: x[None], batch)))[:len(ids)]
         for batch, ids in graphs.ordered_batches(dataset, budget, batch_size)]
  return np.concatenate(out)


def kernel_baselines(config, ds):
  """The WL-kernel and tag+degree-histogram baselines (10-fold SVM)."""
  c = config.infograph
  svm = dict(Cs=tuple(config.svm.Cs), inner_folds=config.svm.inner_folds)
  t0 = time.time()
  res = {"wl": svm_kfold(wl_kernel(ds, c.wl_iterations), ds.labels, ds.folds,
                         kernel="precomputed", **svm)}
  budget = graphs.budget_for(ds, config.batch_size)
  res["hist"] = svm_kfold(
      histogram_features(ds, budget, config.batch_size, ds.num_features),
      ds.labels, ds.folds, kernel=c.svm_kernel, gamma=config.svm.gamma, **svm)
  res["baselines_s"] = time.time() - t0
  return res


def run_infograph(config, seeds, save_embeddings=None, baseline_seeds=None,
                  diagnose=None, diag_seeds=None, every_epoch=False,
                  train_only=False, nested=False, nested_epochs=None):
  """InfoGraph on a TU set: every seed, then the 10-fold SVM; WL and
  tag+degree-histogram baselines through the same protocol.

  `baseline_seeds`: score the random-init encoder of the first this many
  seeds only (None: all), to save SVM time on the large sets.
  `diagnose` ("provided", "random" or "both"): also keep every epoch's
  embeddings and run `diagnose_test_fold_selection` on the first
  `diag_seeds` seeds (a labelled diagnostic, not a result).
  `every_epoch`: keep (and save) every epoch's embeddings, for
  `--rescore ... --nested`. `train_only`: train and save, no baseline and
  no SVM (score the file with `--rescore`).
  """
  c = config.infograph
  ds = graphs.load_tu(c.dataset, datasets_dir=config.get("datasets_dir") or None)
  res = {"baselines_s": 0.0} if train_only else kernel_baselines(config, ds)
  t0 = time.time()
  out = infograph_fit_seeds(ds, seeds, hidden=c.hidden,
                            num_layers=c.num_layers,
                            batch_size=config.batch_size, epochs=c.epochs,
                            learning_rate=config.lr, reshuffle=c.reshuffle,
                            every_epoch=bool(diagnose) or every_epoch or nested)
  res["train_s"] = time.time() - t0
  if save_embeddings:
    np.savez(save_embeddings, **out)
  if train_only:
    res["total_s"] = res["train_s"]
    return res
  t0 = time.time()
  res.update(score_embeddings(config, ds, out, baseline_seeds))
  res["svm_s"] = time.time() - t0
  res["total_s"] = res["baselines_s"] + res["train_s"] + res["svm_s"]
  if nested:
    res.update(nested_epoch_selection(config, ds, out["epoch_embeddings"],
                                      seeds, epochs=nested_epochs))
    res["total_s"] += res["nested_s"]
  if diagnose:
    res["diagnostic"] = diagnose_test_fold_selection(
        config, ds, out["epoch_embeddings"][:, :diag_seeds],
        seeds[:diag_seeds], diagnose)
    res["total_s"] += res["diagnostic"]["diag_s"]
  return res


def score_embeddings(config, ds, out, baseline_seeds=None, gamma=None):
  """The 10-fold SVM of every seed's `embeddings` / `init_embeddings` [S, G, D]."""
  svm = dict(Cs=tuple(config.svm.Cs), inner_folds=config.svm.inner_folds,
             gamma=config.svm.gamma if gamma is None else gamma)
  res = {}
  for key, n in (("embeddings", None), ("init_embeddings", baseline_seeds)):
    runs = [svm_kfold(e, ds.labels, ds.folds,
                      kernel=config.infograph.svm_kernel, **svm)
            for e in out[key][:n]]
    res[key] = _mean_std([r["mean"] for r in runs])
    res[key]["fold_std"] = float(np.std([r["fold_acc"] for r in runs]))
    res[key]["C"] = [r["C"] for r in runs]
  return res


def select_on_test(acc_ExS):
  """Summaries of a [epochs + 1, seeds] table of 10-fold mean accuracies.

  DIAGNOSTIC ONLY: every summary but "fixed" picks an epoch by the test
  folds' accuracy, as InfoGraph's reference reports its result (the maximum
  over its evaluations after epochs 0, 1, ..., 20), so it is biased upwards
  and is never our result.
    fixed:         acc[-1, s] (the last epoch, fixed in advance: the protocol)
    best_per_seed: max_e acc[e, s], each seed at its own best epoch
    best_mean:     acc[e*, s] with e* = argmax_e mean_s acc[e, s]
  Each as {"mean", "std", "values"} over seeds (+ the chosen epochs).
  """
  acc = np.asarray(acc_ExS, np.float64)
  e_star = int(np.argmax(acc.mean(axis=1)))
  return {"fixed": _mean_std(acc[-1]),
          "best_per_seed": {**_mean_std(acc.max(axis=0)),
                            "epochs": np.argmax(acc, axis=0).tolist()},
          "best_mean": {**_mean_std(acc[e_star]), "epoch": e_star}}


def random_stratified_folds(labels_G, seed: int, k: int = 10):
  """k fresh stratified folds (shuffled with `seed`): the reference's
  `svc_classify` draws new ones (random_state=None) at every evaluation."""
  from sklearn.model_selection import StratifiedKFold  # pylint: disable=g-import-not-at-top
  kf = StratifiedKFold(k, shuffle=True, random_state=seed)
  return list(kf.split(np.zeros(len(labels_G)), labels_G))


def diagnose_test_fold_selection(config, ds, epoch_emb, seeds, folds="both"):
  """DIAGNOSTIC: the reference's reporting applied to our runs, never a result.

  Scores the embeddings of every epoch 0..E and seed ([E + 1, S, G, D]) with
  the protocol's SVM (gamma, C grid, inner CV) on the provided folds
  ("provided": isolates the epoch choice) and/or on fresh stratified folds
  drawn per evaluation ("random", seeded by (seed, epoch): the reference's
  evaluation, whose fold noise the maximum also picks up), then summarises
  with `select_on_test`.
  """
  svm = dict(Cs=tuple(config.svm.Cs), inner_folds=config.svm.inner_folds,
             gamma=config.svm.gamma, kernel=config.infograph.svm_kernel)
  kinds = ("provided", "random") if folds == "both" else (folds,)
  out = {"note": "DIAGNOSTIC: epoch selected on the test folds (the "
                 "reference's reporting); not a result of this project"}
  t0 = time.time()
  for kind in kinds:
    acc = np.zeros(epoch_emb.shape[:2])
    for e in range(epoch_emb.shape[0]):
      for j, s in enumerate(seeds):
        fk = (ds.folds if kind == "provided" else
              random_stratified_folds(ds.labels, seed=1000 * int(s) + e))
        acc[e, j] = svm_kfold(epoch_emb[e, j], ds.labels, fk, **svm)["mean"]
    out[kind] = {"acc_epoch_x_seed": acc.tolist(), **select_on_test(acc)}
  out["diag_s"] = time.time() - t0
  return out


def nested_epoch_selection(config, ds, epoch_emb, seeds, gamma=None,
                           epochs=None):
  """Nested CV over (epoch, C), and from the same SVMs the fixed-epoch
  protocol, the random-init baseline and the test-selected diagnostic.

  `epoch_emb` [E + 1, S, G, D]: the embeddings after epochs 0 (= init), 1,
  ..., E of every seed. Per seed, `svm_kfold_nested` runs the protocol's SVM
  (gamma, C grid, inner CV) on every epoch and every provided fold; per
  outer fold the pair (epoch, C) with the best inner-CV accuracy on that
  fold's TRAINING graphs is scored once on its test graphs ("nested").
  The same fits give, per epoch, the protocol's 10-fold accuracy (C by the
  inner CV): its last row is the epoch fixed in advance ("fixed", equal to
  `score_embeddings`' "embeddings"), its first the random-init encoder
  ("init"), and the maximum over epochs on the test folds is the
  reference's reporting ("diagnostic", never a result). `gamma`: None for
  the config's. `epochs`: the candidate epochs (fixed in advance, to cut the
  SVM cost; must hold 0 and the last epoch), None for all; the rows of the
  tables and the chosen epochs are epoch numbers.
  """
  last = epoch_emb.shape[0] - 1
  epochs = list(range(last + 1)) if epochs is None else sorted(set(epochs))
  if epochs[0] != 0 or epochs[-1] != last:
    raise ValueError(f"candidate epochs {epochs} must include 0 and {last}")
  epoch_emb = epoch_emb[np.asarray(epochs)]
  svm = dict(Cs=tuple(config.svm.Cs), inner_folds=config.svm.inner_folds,
             gamma=config.svm.gamma if gamma is None else gamma,
             kernel=config.infograph.svm_kernel)
  t0 = time.time()
  runs = [svm_kfold_nested(epoch_emb[:, j], ds.labels, ds.folds, **svm)
          for j in range(len(seeds))]
  test_SxkxE = np.asarray([r["test_acc_kxE"] for r in runs])
  acc_ExS = test_SxkxE.mean(axis=1).T
  fold_std = lambda a: float(np.std(a))  # noqa: E731   over (seed, fold)
  epochs_Sxk = np.asarray(epochs)[np.asarray([r["epoch"] for r in runs])]
  diag = select_on_test(acc_ExS)      # row numbers -> epoch numbers
  diag["best_per_seed"]["epochs"] = [epochs[i] for i in
                                     diag["best_per_seed"]["epochs"]]
  diag["best_mean"]["epoch"] = epochs[diag["best_mean"]["epoch"]]
  out = {
      "nested": {**_mean_std([r["mean"] for r in runs]),
                 "fold_std": fold_std([r["fold_acc"] for r in runs]),
                 "epoch_seed_x_fold": epochs_Sxk.tolist(),
                 "C_seed_x_fold": [r["C"] for r in runs],
                 "inner_acc_seed_x_fold": [r["inner_acc"] for r in runs],
                 "epoch_counts": np.bincount(
                     epochs_Sxk.ravel(), minlength=last + 1).tolist()},
      "candidate_epochs": epochs,
      "fixed": {**_mean_std(acc_ExS[-1]), "fold_std": fold_std(
          test_SxkxE[:, :, -1])},
      "init": {**_mean_std(acc_ExS[0]), "fold_std": fold_std(
          test_SxkxE[:, :, 0])},
      "diagnostic": {
          "note": "DIAGNOSTIC: epoch selected on the test folds (the "
                  "reference's reporting); not a result of this project",
          "provided": {"acc_epoch_x_seed": acc_ExS.tolist(),
                       "rows_are_epochs": epochs, **diag}},
      "cv_seed_x_fold_x_epoch_x_C": [r["cv_kxExC"] for r in runs],
      "C_seed_x_fold_x_epoch": [r["C_kxE"] for r in runs],
  }
  out["nested_s"] = time.time() - t0
  return out


def rescore_infograph(config, path, gamma, baseline_seeds=None,
                      with_baselines=False, seeds=None, diagnose=None,
                      diag_seeds=None, nested=False, nested_epochs=None):
  """Re-scores embeddings saved by `--save_embeddings` (with another gamma),
  with `with_baselines` the WL / histogram baselines too, and with
  `diagnose` the test-fold-selection diagnostic (files saved from a run with
  `--select_epoch_on_test`). With `nested`, `nested_epoch_selection` on
  every epoch's embeddings (files saved with `--every_epoch`) replaces the
  plain scoring (its "fixed" and "init" are the same SVMs)."""
  ds = graphs.load_tu(config.infograph.dataset,
                      datasets_dir=config.get("datasets_dir") or None)
  res = kernel_baselines(config, ds) if with_baselines else {}
  t0 = time.time()
  with np.load(path, allow_pickle=False) as saved:
    saved = dict(saved)
  if (nested or diagnose) and "epoch_embeddings" not in saved:
    raise ValueError(f"{path} has no epoch_embeddings: save it from a run "
                     "with --every_epoch.")
  if nested:
    res.update(nested_epoch_selection(config, ds, saved["epoch_embeddings"],
                                      seeds, gamma, nested_epochs))
    res["embeddings"], res["init_embeddings"] = res["fixed"], res["init"]
    res["svm_s"] = res["total_s"] = time.time() - t0
    res["train_s"] = 0.0
    return res
  res.update(score_embeddings(config, ds, saved, baseline_seeds, gamma))
  res["svm_s"] = res["total_s"] = res["train_s"] = time.time() - t0
  if diagnose:
    res["diagnostic"] = diagnose_test_fold_selection(
        config, ds, saved["epoch_embeddings"][:, :diag_seeds],
        seeds[:diag_seeds], diagnose)
    res["total_s"] += res["diagnostic"]["diag_s"]
  return res


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--first_seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="write the results as JSON")
  parser.add_argument("--save_embeddings", default=None,
                      help="InfoGraph: write the embeddings as .npz")
  parser.add_argument("--rescore", default=None,
                      help="InfoGraph: score a saved .npz instead of training")
  parser.add_argument("--gamma", default=None,
                      help="InfoGraph: SVM gamma ('auto', 'scale' or a number;"
                      " default: the config's)")
  parser.add_argument("--with_baselines", action="store_true",
                      help="InfoGraph --rescore: also score the WL and "
                      "histogram baselines")
  parser.add_argument("--baseline_seeds", type=int, default=None,
                      help="InfoGraph: random-init baseline of the first K "
                      "seeds only (default: every seed)")
  parser.add_argument("--select_epoch_on_test", default=None,
                      choices=("provided", "random", "both"),
                      help="InfoGraph DIAGNOSTIC, never a result: also score "
                      "every epoch's embeddings and report the best epoch "
                      "chosen on the test folds (the reference's reporting), "
                      "on the provided folds, on fresh random folds per "
                      "evaluation (the reference's), or both")
  parser.add_argument("--every_epoch", action="store_true",
                      help="InfoGraph: keep every epoch's embeddings (saved "
                      "with --save_embeddings; needed by --nested)")
  parser.add_argument("--train_only", action="store_true",
                      help="InfoGraph: train and save only (no baselines, no "
                      "SVM); score the file later with --rescore")
  parser.add_argument("--nested", action="store_true",
                      help="InfoGraph: also choose (epoch, C) per outer fold "
                      "by the inner CV on its training graphs only (nested "
                      "CV; never the test folds) and report it beside the "
                      "fixed epoch; with --rescore, a file saved with "
                      "--every_epoch")
  parser.add_argument("--nested_epochs", default=None,
                      help="--nested: candidate epochs, comma-separated "
                      "(must include 0 and the last; default: all)")
  parser.add_argument("--diag_seeds", type=int, default=None,
                      help="the diagnostic on the first K seeds only")
  args = parser.parse_args(argv)
  config = load_config(args.config)
  if args.rescore:  # the seeds are those saved in the file
    with np.load(args.rescore, allow_pickle=False) as saved:
      args.seeds = len(saved["embeddings"])
  seeds = list(range(args.first_seed, args.first_seed + args.seeds))
  nested_epochs = (None if args.nested_epochs is None else
                   [int(e) for e in args.nested_epochs.split(",")])
  if config.method == "dgi":
    out = run_dgi(config, seeds)
  elif args.rescore:
    gamma = args.gamma
    if gamma not in (None, "auto", "scale"):
      gamma = float(gamma)
    out = rescore_infograph(config, args.rescore, gamma, args.baseline_seeds,
                            args.with_baselines, seeds,
                            args.select_epoch_on_test, args.diag_seeds,
                            args.nested, nested_epochs)
  else:
    out = run_infograph(config, seeds, args.save_embeddings,
                        args.baseline_seeds, args.select_epoch_on_test,
                        args.diag_seeds, args.every_epoch, args.train_only,
                        args.nested, nested_epochs)
  res = {"config": args.config, "seeds": seeds, **out}
  line = lambda k: f"{100 * res[k]['mean']:.2f} +- {100 * res[k]['std']:.2f}"  # noqa: E731
  print(f"{args.config}  seeds {seeds[0]}..{seeds[-1]}")
  if "embeddings" in res:   # not with --train_only
    print(f"  learned    {line('embeddings')}  (mean +- std over seeds)")
    print(f"  random-init {line('init_embeddings')}")
  if "raw" in res:
    print(f"  raw features {100 * res['raw']['test_acc']:.2f}")
  for key, name in (("wl", "WL kernel"), ("hist", "tag+degree hist")):
    if key in res:
      print(f"  {name}  {100 * res[key]['mean']:.2f} +- "
            f"{100 * res[key]['std']:.2f} (over folds)")
  if "nested" in res:
    n = res["nested"]
    print(f"  epoch {len(n['epoch_counts']) - 1} fixed {line('fixed')};  "
          f"nested CV over (epoch, C) {line('nested')}  (mean +- std over "
          f"seeds); epochs chosen (count per epoch 0..): {n['epoch_counts']}")
  for kind in ("provided", "random"):
    d = res.get("diagnostic", {}).get(kind)
    if d:
      print(f"  DIAGNOSTIC, epoch picked on the test folds ({kind} folds; "
            "not a result):")
      for k in ("fixed", "best_per_seed", "best_mean"):
        print(f"    {k:14s} {100 * d[k]['mean']:.2f} +- {100 * d[k]['std']:.2f}"
              f"  {d[k].get('epochs', d[k].get('epoch', 'last'))}")
  print(f"  wall {res['total_s']:.0f} s (train {res['train_s']:.0f} s)")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(res, f, indent=1)
  return res


if __name__ == "__main__":
  main()
