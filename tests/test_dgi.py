"""Deep Graph Infomax: corruption, loss vs a NumPy BCE, padding, 8 devices, seeds."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import cli, training
from mi_jax.data import graphs, shared
from mi_jax.data.graphs import Budget, budget_for, pad_graphs
from mi_jax.evaluation.node_classification import node_classification
from mi_jax.encoders.gnn import SparseFeatures
from mi_jax.objectives import dgi

from experiments.graphs.seeds import dgi_fit_seeds
from mi_jax.training import sharding

import tiny_graphs

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "experiments",
                       "configs")


def _graph(budget=None, num_graphs=6, seed=0):
  """One batch of a few small graphs seen as one graph, with float features."""
  ds = tiny_graphs.random_dataset(num_graphs=num_graphs, num_tags=4, seed=seed)
  ids = list(range(num_graphs))
  b = pad_graphs(ds, ids, budget or budget_for(ds, num_graphs, multiple=1))
  n = int(b["node_mask"].sum())
  b["x"][:n] += np.random.default_rng(seed).normal(size=(n, 4)) * 0.5
  return {k: b[k] for k in ("x", "senders", "receivers", "edge_mask",
                            "node_mask")}


def _sparse(batch):
  rows, cols = np.nonzero(batch["x"])
  return dict(batch, x=SparseFeatures(rows.astype(np.int32),
                                      cols.astype(np.int32),
                                      batch["x"][rows, cols]))


def _densify(x, n):
  out = np.zeros((n, 4), np.float32)
  np.add.at(out, (np.asarray(x.row_K), np.asarray(x.col_K)),
            np.asarray(x.value_K))
  return out


def test_corruption_keeps_the_graph_and_permutes_only_features():
  batch = _graph(Budget(48, 80, 8))
  n, n_pad = int(batch["node_mask"].sum()), len(batch["node_mask"])
  key = jax.random.key(3)
  perm = np.asarray(dgi.corruption_perm(jnp.asarray(batch["node_mask"]), key))
  assert sorted(perm[:n]) == list(range(n)) and not np.all(perm[:n] ==
                                                           np.arange(n))
  np.testing.assert_array_equal(perm[n:], np.arange(n, n_pad))
  for b, dense in ((batch, lambda x: np.asarray(x)),
                   (_sparse(batch), lambda x: _densify(x, n_pad))):
    c = dgi.corrupt(b, key)
    for k in ("senders", "receivers", "edge_mask", "node_mask"):
      np.testing.assert_array_equal(c[k], b[k])
    np.testing.assert_array_equal(dense(c["x"]), batch["x"][perm])


def test_loss_is_bce_of_bilinear_scores_and_reuses_xw():
  batch = _graph()
  n = int(batch["node_mask"].sum())   # budget_for leaves one padding node
  model = dgi.DGIModel(4, 16, rngs=nnx.Rngs(0))
  model.bias[...] = jnp.float32(0.3)
  key = jax.random.key(1)
  loss, metrics = jax.jit(dgi.dgi_loss)(model, batch, key)
  h = np.asarray(model.encoder(batch), np.float64)[:n]
  hc = np.asarray(model.encoder(dgi.corrupt(batch, key)), np.float64)[:n]
  s = 1 / (1 + np.exp(-h.mean(0)))
  w = np.asarray(model.critic.kernel[...], np.float64)
  pos, neg = h @ w @ s + 0.3, hc @ w @ s + 0.3
  bce = (np.logaddexp(0, -pos).sum() + np.logaddexp(0, neg).sum()) / (2 * n)
  np.testing.assert_allclose(loss, bce, rtol=1e-5)
  np.testing.assert_allclose(metrics["mi"], -2 * bce, rtol=1e-5)


def test_loss_and_gradients_ignore_padding():
  tight = _graph()
  loose = tiny_graphs.garble_padding(_graph(Budget(64, 96, 8)))
  key = jax.random.key(2)
  out = []
  for batch in (tight, loose, _sparse(tight), _sparse(loose)):
    model = dgi.DGIModel(4, 8, rngs=nnx.Rngs(0))
    grads = nnx.grad(lambda m: dgi.dgi_loss(m, batch, key)[0])(model)
    out.append((dgi.dgi_loss(model, batch, key)[0], jax.tree.leaves(grads)))
  for loss, grads in out[1:]:
    np.testing.assert_allclose(loss, out[0][0], rtol=1e-5)
    for a, b in zip(grads, out[0][1]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_step_on_8_devices_equals_single_device():
  assert jax.device_count() == 8
  batch = _sparse(_graph(Budget(48, 80, 8)))
  pad8 = lambda a: np.pad(a, (0, -len(a) % 8))  # noqa: E731
  batch["x"] = SparseFeatures(*map(pad8, batch["x"]))
  tx = optax.adam(1e-2)
  graphdef, state = training.init_train_state(
      dgi.DGIModel(4, 16, rngs=nnx.Rngs(0)), tx)
  step = training.make_train_step(graphdef, tx, dgi.dgi_loss)
  mesh = sharding.make_mesh()
  sharded = sharding.shard_train_step(step, mesh)
  single = jax.jit(step)
  s1, s8 = state, sharding.replicate(state, mesh)
  b8 = sharding.shard_batch(batch, mesh)
  for t in range(3):
    key = jax.random.key(t)
    s1, m1 = single(s1, batch, key)
    s8, m8 = sharded(s8, b8, key)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_fit_seeds_vmapped_equals_one_seed_and_stops_early():
  batch = _sparse(_graph())
  both = dgi_fit_seeds(batch, 4, [0, 1], hidden=8, learning_rate=1e-2,
                       patience=3, max_epochs=60, chunk=10)
  one = dgi_fit_seeds(batch, 4, [1], hidden=8, learning_rate=1e-2,
                      patience=3, max_epochs=60, chunk=10)
  np.testing.assert_allclose(both["embeddings"][1], one["embeddings"][0],
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(both["best_loss"][1], one["best_loss"][0],
                             rtol=1e-5)
  losses = both["losses"]
  for s in range(2):
    run = losses[:, s][~np.isnan(losses[:, s])]
    assert len(run) == both["epochs"][s]
    best = int(both["best_epoch"][s])
    np.testing.assert_allclose(run[best], both["best_loss"][s], rtol=1e-6)
    assert run[best] == run.min()
    if both["epochs"][s] < 60:   # stopped: `patience` epochs without a gain
      assert both["epochs"][s] == best + 3 + 1


@pytest.mark.skipif(not shared.available("planetoid/cora.npz"),
                    reason="../shared/data/planetoid not available")
@pytest.mark.slow
def test_mi_jax_train_runs_dgi_on_cora(tmp_path, capsys):
  assert cli.main([
      "train", "--config", os.path.join(CONFIGS, "dgi_cora.py"),
      "--workdir", str(tmp_path), "--config.steps=2", "--config.log_every=1",
      "--config.eval_every=2", "--config.probe_every=2",
      "--config.checkpoint_every=2", "--config.nodes.Cs=(1.0,)"]) == 0
  out = capsys.readouterr().out
  d = graphs.load_planetoid("cora")
  raw = node_classification(graphs.row_normalize(d["features"]), d["labels"],
                            d["train_idx"], d["val_idx"], d["test_idx"],
                            Cs=(1.0,))
  assert re.search(r"raw features\s+%.1f\s+47.9" % (100 * raw["test_acc"]),
                   out), out
  assert re.search(r"DGI embeddings\s+\d+\.\d\s+82.3", out), out
  assert re.search(r"random-init encoder\s+\d+\.\d\s+69.3", out), out
