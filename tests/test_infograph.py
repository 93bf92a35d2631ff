"""InfoGraph: the positive mask, the loss vs NumPy, padding, vmapped seeds."""
import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax import cli
from mi_jax.data import graphs, shared
from mi_jax.data.graphs import Budget, budget_for, pad_graphs
from mi_jax.evaluation.graph_kernels import wl_features, wl_kernel
from mi_jax.evaluation.svm import svm_kfold
from mi_jax.objectives import infograph

from experiments.graphs.seeds import infograph_fit_seeds

import tiny_graphs


def test_mask_matches_hand_written():
  node_graph = jnp.array([0, 0, 1, 2, 2, 2, 0, 0])
  node_mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
  graph_mask = jnp.array([1, 1, 1, 0], bool)
  pos, valid = infograph.infograph_mask(node_graph, node_mask, graph_mask)
  expect_pos = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0],
                         [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0],
                         [0, 0, 0, 0], [0, 0, 0, 0]], bool)
  expect_valid = np.zeros((8, 4), bool)
  expect_valid[:6, :3] = True
  np.testing.assert_array_equal(pos, expect_pos)
  np.testing.assert_array_equal(valid, expect_valid)


def _batch(budget=None):
  ds = tiny_graphs.random_dataset(num_graphs=5, num_tags=3)
  return ds, pad_graphs(ds, range(5), budget or budget_for(ds, 5, multiple=1))


def test_loss_equals_reference_formula():
  ds, batch = _batch()
  model = infograph.InfoGraphModel(3, 4, 2, rngs=nnx.Rngs(0))
  loss, metrics = nnx.jit(infograph.infograph_loss)(model, batch,
                                                    jax.random.key(0))
  model = infograph.InfoGraphModel(3, 4, 2, rngs=nnx.Rngs(0))   # fresh BN
  h, hg = model.node_and_graph(batch)
  n, g = int(batch["node_mask"].sum()), 5
  l = np.asarray(model.local_head(h), np.float64)[:n]
  gl = np.asarray(model.global_head(hg), np.float64)[:g]
  scores = l @ gl.T
  own = np.repeat(np.arange(g), ds.num_nodes)[:, None] == np.arange(g)
  # InfoGraph's local_global_loss_ (JSD): E_pos = sum(log2 - sp(-s)) / n,
  # E_neg = sum(sp(s) - log2) / (n (g - 1)); loss = E_neg - E_pos.
  e_pos = (np.log(2) - np.logaddexp(0, -scores))[own].sum() / n
  e_neg = (np.logaddexp(0, scores) - np.log(2))[~own].sum() / (n * (g - 1))
  np.testing.assert_allclose(loss, e_neg - e_pos + 2 * np.log(2), rtol=1e-5)
  np.testing.assert_allclose(metrics["mi"], -loss, rtol=1e-6)


def test_loss_gradients_and_bn_stats_ignore_padding():
  _, tight = _batch()
  _, loose = _batch(Budget(64, 128, 16))
  loose = tiny_graphs.garble_padding(loose)
  out = []
  for batch in (tight, loose):
    model = infograph.InfoGraphModel(3, 4, 2, rngs=nnx.Rngs(1))
    grads = nnx.grad(lambda m: infograph.infograph_loss(m, batch, None)[0])(
        model)
    stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    out.append((infograph.infograph_loss(
        infograph.InfoGraphModel(3, 4, 2, rngs=nnx.Rngs(1)), batch, None)[0],
                jax.tree.leaves(grads), stats))
  np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5)
  for a, b in zip(out[0][1] + out[0][2], out[1][1] + out[1][2]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_fit_seeds_vmapped_equals_one_seed():
  ds = tiny_graphs.random_dataset(num_graphs=9, num_tags=3, seed=4)
  both = infograph_fit_seeds(ds, [0, 1], hidden=4, num_layers=2,
                             batch_size=4, epochs=2)
  one = infograph_fit_seeds(ds, [1], hidden=4, num_layers=2, batch_size=4,
                            epochs=2)
  assert both["embeddings"].shape == (2, 9, 8)
  assert both["losses"].shape == (6, 2)   # 3 batches (4 + 4 + 1) x 2 epochs
  np.testing.assert_allclose(both["losses"][:, 1], one["losses"][:, 0],
                             rtol=1e-4)
  # Adam amplifies float rounding in coordinates with near-zero gradients,
  # so the embeddings agree to ~1e-2 while two seeds differ by ~1.
  np.testing.assert_allclose(both["embeddings"][1], one["embeddings"][0],
                             atol=0.1)
  assert np.abs(both["embeddings"][0] - both["embeddings"][1]).max() > 1.0
  assert not np.allclose(both["embeddings"][0], both["init_embeddings"][0])


def test_wl_features_and_svm_folds():
  ds = tiny_graphs.random_dataset(num_graphs=4, num_tags=2, seed=2)
  f = wl_features(ds, iterations=1).toarray()
  # Iteration 0 counts the tags of each graph.
  for gi in range(4):
    tags = ds.tags[ds.node_offsets[gi]:ds.node_offsets[gi + 1]]
    np.testing.assert_array_equal(f[gi, :2], np.bincount(tags, minlength=2))
  # Each iteration assigns one label per node.
  np.testing.assert_array_equal(f.sum(1), 2 * ds.num_nodes)
  # Separable toy data: every fold is classified perfectly; C from the grid.
  rng = np.random.default_rng(0)
  y = np.repeat([0, 1], 20)
  x = rng.normal(size=(40, 2)) + 6 * y[:, None]
  folds = [(np.setdiff1d(np.arange(40), t), t)
           for t in np.array_split(rng.permutation(40), 4)]
  res = svm_kfold(x, y, folds, kernel="linear")
  assert res["fold_acc"] == [1.0] * 4 and res["mean"] == 1.0
  k = x @ x.T
  assert svm_kfold(k, y, folds, kernel="precomputed")["mean"] == 1.0


@pytest.mark.skipif(not shared.available("tu/MUTAG/MUTAG.txt"),
                    reason="../shared/data/tu not available")
@pytest.mark.slow
def test_mi_jax_train_runs_infograph_on_mutag(tmp_path, capsys):
  config = os.path.join(os.path.dirname(__file__), "..", "experiments",
                        "configs", "infograph_mutag.py")
  assert cli.main([
      "train", "--config", config, "--workdir", str(tmp_path),
      "--config.steps=2", "--config.log_every=1", "--config.svm.Cs=(1.0,)",
      "--config.svm.inner_folds=2"]) == 0
  out = capsys.readouterr().out
  ds = graphs.load_tu("MUTAG")
  wl = svm_kfold(wl_kernel(ds, 3), ds.labels, ds.folds, kernel="precomputed",
                 Cs=(1.0,), inner_folds=2)
  assert re.search(r"WL subtree kernel \(h=3\)\s+%.2f \+-\s+%.2f" % (
      100 * wl["mean"], 100 * wl["std"]), out), out
  for label in ("InfoGraph embeddings", r"tag\+degree histogram \(raw\)",
                "random-init encoder"):
    assert re.search(label + r"\s+\d+\.\d\d \+-", out), out


def test_linear_kernels_are_xavier_uniform_and_biases_zero():
  # The reference's init_emb: every nn.Linear Xavier-uniform, bias 0.
  model = infograph.InfoGraphModel(7, 32, 5, rngs=nnx.Rngs(0))
  linears = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Linear)]
  assert len(linears) == 5 * 2 + 2 * 4
  for lin in linears:
    w = np.asarray(lin.kernel[...])
    bound = np.sqrt(6.0 / sum(w.shape))
    assert np.abs(w).max() <= bound
    # Uniform on [-bound, bound]: variance bound^2 / 3 (lecun-normal's
    # 1 / fan_in differs by a factor (fan_in + fan_out) / (2 fan_in)).
    if w.size >= 1024:
      np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.1)
      assert np.abs(w).max() > 0.97 * bound
    np.testing.assert_array_equal(np.asarray(lin.bias[...]), 0.0)


def test_svm_fixed_gamma_precomputed_equals_rbf_svc():
  from sklearn.model_selection import GridSearchCV, StratifiedKFold
  from sklearn.svm import SVC
  rng = np.random.default_rng(3)
  y = np.repeat([0, 1, 2], 20)
  x = rng.normal(size=(60, 5)) + 1.2 * y[:, None]
  folds = [(np.setdiff1d(np.arange(60), t), t)
           for t in np.array_split(rng.permutation(60), 3)]
  got = svm_kfold(x, y, folds, gamma="auto", Cs=(0.1, 1.0, 10.0))
  accs, cs = [], []
  for tr, te in folds:   # scikit-learn's own RBF SVC with gamma = 1 / D
    s = GridSearchCV(SVC(gamma=1 / 5), {"C": [0.1, 1.0, 10.0]},
                     cv=StratifiedKFold(5, shuffle=True, random_state=0))
    s.fit(x[tr], y[tr])
    accs.append(np.mean(s.predict(x[te]) == y[te]))
    cs.append(s.best_params_["C"])
  np.testing.assert_allclose(got["fold_acc"], accs)
  assert got["C"] == cs
  assert 0.5 < got["mean"] < 1.0
  with pytest.raises(ValueError, match="gamma"):
    svm_kfold(x, y, folds, gamma=-1.0)


def test_epoch_embeddings_and_test_fold_selection_summaries():
  from experiments.graphs.seeds import select_on_test
  ds = tiny_graphs.random_dataset(num_graphs=9, num_tags=3, seed=4)
  out = infograph_fit_seeds(ds, [0, 1], hidden=4, num_layers=2, batch_size=4,
                            epochs=2, every_epoch=True)
  assert out["epoch_embeddings"].shape == (3, 2, 9, 8)
  np.testing.assert_array_equal(out["epoch_embeddings"][0],
                                out["init_embeddings"])
  np.testing.assert_array_equal(out["epoch_embeddings"][-1],
                                out["embeddings"])
  assert not np.allclose(out["epoch_embeddings"][1], out["embeddings"])
  # [epochs + 1, seeds] accuracies: the protocol takes the last row; the
  # diagnostic's selections take each seed's best row / the best mean row.
  acc = np.array([[0.5, 0.9, 0.6], [0.8, 0.6, 0.5], [0.7, 0.7, 0.3]])
  s = select_on_test(acc)
  np.testing.assert_allclose(s["fixed"]["values"], [0.7, 0.7, 0.3])
  np.testing.assert_allclose(s["best_per_seed"]["values"], [0.8, 0.9, 0.6])
  assert s["best_per_seed"]["epochs"] == [1, 0, 0]
  assert s["best_mean"]["epoch"] == 0   # row means 0.667, 0.633, 0.567
  np.testing.assert_allclose(s["best_mean"]["mean"], 2 / 3)


def _two_epoch_case(seed=0):
  """One outer fold where the inner-CV-best epoch and the test-best differ.

  Epoch 0: the label is written in the features of the training graphs and
  its opposite in those of the test graphs (inner CV ~1.0, test 0.0).
  Epoch 1: noise on the training graphs, the label on the test graphs
  (inner CV ~0.5, test > 0).
  """
  rng = np.random.default_rng(seed)
  y = np.tile([0, 1], 30)
  train, test = np.arange(40), np.arange(40, 60)
  sign = np.where(y == 1, 1.0, -1.0)
  e0 = (3 * sign + 0.1 * rng.normal(size=60))[:, None]
  e0[test] *= -1
  e1 = rng.normal(size=(60, 1))
  e1[test] = 3 * sign[test, None]
  return np.stack([e0, e1]), y, [(train, test)]


def test_nested_cv_chooses_the_epoch_on_training_graphs_only():
  from mi_jax.evaluation.svm import svm_kfold_nested
  xs, y, folds = _two_epoch_case()
  kw = dict(gamma="auto", Cs=(0.1, 1.0, 10.0), inner_folds=5)
  r = svm_kfold_nested(xs, y, folds, **kw)
  cv = np.asarray(r["cv_kxExC"][0])            # [E, C] inner-CV accuracies
  test = np.asarray(r["test_acc_kxE"][0])      # each epoch's test accuracy
  assert cv[0].max() > 0.95 > cv[1].max()      # the training folds favour 0
  assert test[1] > test[0] == 0.0              # the test fold would pick 1
  assert r["epoch"] == [0] and r["fold_acc"] == [0.0]
  assert r["inner_acc"] == [cv[0].max()]
  # The choice reads the training graphs only: new test-graph features and
  # labels change every test accuracy but not the chosen (epoch, C).
  rng = np.random.default_rng(1)
  xs2, y2 = xs.copy(), y.copy()
  xs2[:, 40:] = rng.normal(size=xs2[:, 40:].shape) * 10
  y2[40:] = rng.integers(0, 2, 20)
  r2 = svm_kfold_nested(xs2, y2, folds, **kw)
  assert (r2["epoch"], r2["C"], r2["cv_kxExC"]) == (r["epoch"], r["C"],
                                                     r["cv_kxExC"])
  assert r2["test_acc_kxE"] != r["test_acc_kxE"]
  # Swapping the two epochs on the training graphs moves the choice.
  xs3 = xs[::-1].copy()
  r3 = svm_kfold_nested(xs3, y, folds, **kw)
  assert r3["epoch"] == [1]


def test_choose_by_inner_cv_ties_go_to_the_last_epoch_then_smallest_c():
  from mi_jax.evaluation.svm import choose_by_inner_cv
  cv = np.array([[0.5, 0.9, 0.9], [0.8, 0.7, 0.6], [0.9, 0.9, 0.2]])
  assert choose_by_inner_cv(cv) == (2, 0)
  assert choose_by_inner_cv(cv[:2]) == (0, 1)


def test_nested_last_epoch_column_equals_fixed_protocol():
  from mi_jax.evaluation.svm import svm_kfold_nested
  rng = np.random.default_rng(5)
  y = np.repeat([0, 1], 25)
  xs = rng.normal(size=(3, 50, 4)) + np.array([0.3, 0.8, 1.5])[:, None, None] * y[:, None]
  folds = [(np.setdiff1d(np.arange(50), t), t)
           for t in np.array_split(rng.permutation(50), 5)]
  kw = dict(gamma="auto", Cs=(0.01, 1.0, 100.0), inner_folds=3)
  r = svm_kfold_nested(xs, y, folds, **kw)
  for e in range(3):
    fixed = svm_kfold(xs[e], y, folds, **kw)
    np.testing.assert_allclose(np.asarray(r["test_acc_kxE"])[:, e],
                               fixed["fold_acc"])
    assert [c[e] for c in r["C_kxE"]] == fixed["C"]
  # Each fold's chosen epoch has the best inner-CV accuracy of that fold.
  for f in range(5):
    cv = np.asarray(r["cv_kxExC"][f])
    assert r["inner_acc"][f] == cv.max()
    assert cv[r["epoch"][f]].max() == cv.max()


def test_nested_epoch_selection_summaries():
  from experiments.graphs.seeds import nested_epoch_selection
  import ml_collections
  ds = tiny_graphs.random_dataset(num_graphs=40, num_tags=3, seed=6)
  rng = np.random.default_rng(0)
  ds = dataclasses.replace(ds, folds=[
      (np.setdiff1d(np.arange(40), t), t)
      for t in np.array_split(rng.permutation(40), 4)])
  emb = rng.normal(size=(3, 2, 40, 5)) + 0.7 * ds.labels[None, None, :, None]
  config = ml_collections.ConfigDict(dict(
      svm=dict(Cs=(0.1, 10.0), inner_folds=3, gamma="auto"),
      infograph=dict(svm_kernel="rbf")))
  out = nested_epoch_selection(config, ds, emb, [0, 1])
  for j in range(2):
    fixed = svm_kfold(emb[-1, j], ds.labels, ds.folds, Cs=(0.1, 10.0),
                      inner_folds=3, gamma="auto")
    init = svm_kfold(emb[0, j], ds.labels, ds.folds, Cs=(0.1, 10.0),
                     inner_folds=3, gamma="auto")
    np.testing.assert_allclose(out["fixed"]["values"][j], fixed["mean"])
    np.testing.assert_allclose(out["init"]["values"][j], init["mean"])
  assert sum(out["nested"]["epoch_counts"]) == 2 * 4
  acc = np.asarray(out["diagnostic"]["provided"]["acc_epoch_x_seed"])
  np.testing.assert_allclose(out["diagnostic"]["provided"]["best_per_seed"][
      "values"], acc.max(0))


def test_nested_epoch_selection_candidate_subset():
  from experiments.graphs.seeds import nested_epoch_selection
  import ml_collections
  rng = np.random.default_rng(1)
  ds = tiny_graphs.random_dataset(num_graphs=30, num_tags=3, seed=7)
  ds = dataclasses.replace(ds, folds=[
      (np.setdiff1d(np.arange(30), t), t)
      for t in np.array_split(rng.permutation(30), 3)])
  # Epoch 2 (not a candidate) carries the label; 0, 1 and 3 are noise.
  emb = rng.normal(size=(4, 1, 30, 3))
  emb[2, 0] += 5 * ds.labels[:, None]
  config = ml_collections.ConfigDict(dict(
      svm=dict(Cs=(1.0,), inner_folds=3, gamma="auto"),
      infograph=dict(svm_kernel="rbf")))
  out = nested_epoch_selection(config, ds, emb, [0], epochs=[0, 1, 3])
  assert out["candidate_epochs"] == [0, 1, 3]
  assert set(np.ravel(out["nested"]["epoch_seed_x_fold"])) <= {0, 1, 3}
  assert out["nested"]["epoch_counts"][2] == 0
  assert out["diagnostic"]["provided"]["best_mean"]["epoch"] in (0, 1, 3)
  full = nested_epoch_selection(config, ds, emb, [0])
  assert full["nested"]["epoch_counts"][2] == 3    # every fold picks it
  with pytest.raises(ValueError, match="must include"):
    nested_epoch_selection(config, ds, emb, [0], epochs=[1, 3])
