"""GCN / GIN layers against dense NumPy float64 references; padding invariance."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mi_jax import encoders
from mi_jax.data.graphs import Budget, budget_for, pad_graphs
from mi_jax.encoders.gnn import MaskedBatchNorm, SparseFeatures, sum_pool

import tiny_graphs

IDS = [0, 1, 2, 3]


def _batch(dataset, budget=None):
  budget = budget or budget_for(dataset, len(IDS), multiple=1)
  return pad_graphs(dataset, IDS, budget)


def _np(tree):
  return jax.tree.map(lambda v: np.asarray(v, np.float64), tree)


def test_gcn_equals_dense_reference():
  ds = tiny_graphs.random_dataset(num_graphs=4, num_tags=5)
  batch = _batch(ds)
  batch["x"] = np.random.default_rng(0).normal(
      size=batch["x"].shape).astype(np.float32)
  model = encoders.make("gcn", in_dim=5, hidden=(6, 4), rngs=nnx.Rngs(0))
  # Non-default PReLU slopes and biases so that each term is exercised.
  for i, layer in enumerate(model.layers):
    layer.act.slope[...] = jnp.float32(0.1 + 0.2 * i)
    layer.bias[...] = jnp.linspace(-1, 1, layer.bias.shape[0])
  out = jax.jit(lambda m, b: m(b))(model, batch)
  n = int(batch["node_mask"].sum())
  a_hat = tiny_graphs.dense_adjacency(ds, IDS) + np.eye(n)
  d_inv_sqrt = 1 / np.sqrt(a_hat.sum(1))
  norm = d_inv_sqrt[:, None] * a_hat * d_inv_sqrt[None, :]
  h = np.asarray(batch["x"][:n], np.float64)
  for layer in model.layers:
    z = norm @ h @ _np(layer.kernel[...]) + _np(layer.bias[...])
    h = np.where(z >= 0, z, float(layer.act.slope[...]) * z)
  np.testing.assert_allclose(np.asarray(out)[:n], h, rtol=1e-5, atol=1e-5)


def test_gcn_sparse_features_equal_dense():
  ds = tiny_graphs.random_dataset(num_graphs=4, num_tags=5)
  batch = _batch(ds)
  x = batch["x"] * np.arange(1, 6, dtype=np.float32)
  rows, cols = np.nonzero(x)
  sparse = dict(batch, x=SparseFeatures(rows.astype(np.int32),
                                        cols.astype(np.int32), x[rows, cols]))
  model = encoders.make("gcn", in_dim=5, hidden=8, rngs=nnx.Rngs(1))
  np.testing.assert_allclose(model(sparse), model(dict(batch, x=x)),
                             rtol=1e-6, atol=1e-6)


def test_gin_layer_equals_dense_reference():
  ds = tiny_graphs.random_dataset(num_graphs=4, num_tags=3)
  batch = _batch(ds)
  model = encoders.make("gin", in_dim=3, hidden=4, num_layers=2, eps=0.3,
                        rngs=nnx.Rngs(2))
  hs = nnx.jit(lambda m, b: m(b))(model, batch)   # nnx.jit keeps BN updates
  n = int(batch["node_mask"].sum())
  adj = tiny_graphs.dense_adjacency(ds, IDS)
  h = np.asarray(batch["x"][:n], np.float64)
  for layer, out in zip(model.layers, hs):
    agg = 1.3 * h + adj @ h
    z = np.maximum(agg @ _np(layer.lin1.kernel[...]) + _np(layer.lin1.bias[...]), 0)
    z = np.maximum(z @ _np(layer.lin2.kernel[...]) + _np(layer.lin2.bias[...]), 0)
    mu, var = z.mean(0), z.var(0)
    h = (z - mu) / np.sqrt(var + 1e-5)   # scale 1, bias 0 at init
    np.testing.assert_allclose(np.asarray(out)[:n], h, rtol=1e-4, atol=1e-4)
    # Running statistics moved by 10% towards the batch moments (the
    # variance: the unbiased one, as PyTorch's BatchNorm1d).
    np.testing.assert_allclose(layer.bn.mean[...], 0.1 * mu, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(layer.bn.var[...],
                               0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  pooled = sum_pool(jnp.concatenate(hs, -1), batch)
  starts = np.concatenate([[0], np.cumsum(ds.num_nodes[IDS])])
  ref = np.stack([np.concatenate([np.asarray(o)[s:e] for o in hs], -1).sum(0)
                  for s, e in zip(starts[:-1], starts[1:])])
  np.testing.assert_allclose(np.asarray(pooled)[:len(IDS)], ref, rtol=1e-5,
                             atol=1e-5)


def test_padding_changes_no_output_and_no_batch_statistic():
  ds = tiny_graphs.random_dataset(num_graphs=4, num_tags=3)
  tight = _batch(ds)
  loose = tiny_graphs.garble_padding(_batch(ds, Budget(64, 96, 16)))
  n, g = int(tight["node_mask"].sum()), len(IDS)
  for name, kw in (("gin", dict(hidden=4, num_layers=3)),
                   ("gcn", dict(hidden=(5, 3)))):
    outs = []
    for batch in (tight, loose):
      model = encoders.make(name, in_dim=3, rngs=nnx.Rngs(3), **kw)
      h = model(batch)
      h = jnp.concatenate(h, -1) if isinstance(h, list) else h
      stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
      outs.append((np.asarray(h)[:n], np.asarray(sum_pool(h, batch))[:g],
                   [np.asarray(s) for s in stats]))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)
    for a, b in zip(outs[0][2], outs[1][2]):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # The padded graphs pool to exactly zero.
  model = encoders.make("gin", in_dim=3, hidden=4, rngs=nnx.Rngs(3))
  assert np.all(np.asarray(sum_pool(model.concat(loose), loose))[g:] == 0)


def test_gin_eval_mode_uses_running_statistics():
  ds = tiny_graphs.random_dataset(num_graphs=4)
  batch = _batch(ds)
  model = encoders.make("gin", in_dim=3, hidden=4, num_layers=1,
                        rngs=nnx.Rngs(4))
  model.eval()
  h = np.asarray(model(batch)[0])
  layer = model.layers[0]
  n = int(batch["node_mask"].sum())
  x = batch["x"][:n]
  agg = x + tiny_graphs.dense_adjacency(ds, IDS).astype(np.float32) @ x
  z = jax.nn.relu(layer.lin2(jax.nn.relu(layer.lin1(agg))))
  # Running mean 0 / var 1 at init: eval-mode BN is z / sqrt(1 + 1e-5).
  np.testing.assert_allclose(h[:n], z / np.sqrt(1 + 1e-5), rtol=1e-5,
                             atol=1e-6)
  assert np.all(np.asarray(layer.bn.mean[...]) == 0)   # eval mutates nothing


def test_batch_norm_running_stats_follow_pytorch():
  # PyTorch's BatchNorm1d (InfoGraph's reference): the output uses the
  # biased batch variance, the running variance moves towards the unbiased
  # one, var * n / (n - 1), with momentum 0.1; padded rows count for nothing.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(9, 3)).astype(np.float32) * [1.0, 3.0, 0.5]
  mask = np.arange(9) < 6
  x64 = x[:6].astype(np.float64)
  for unbiased, ddof in ((True, 1), (False, 0)):
    bn = MaskedBatchNorm(3, unbiased_running_var=unbiased)
    y = np.asarray(bn(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(
        y[:6], (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5), rtol=1e-5,
        atol=1e-6)
    np.testing.assert_allclose(bn.mean[...], 0.1 * x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * x64.var(0, ddof=ddof),
                               rtol=1e-6)
