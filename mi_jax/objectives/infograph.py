"""InfoGraph: graph embeddings by maximising local-global mutual information.

Sun, Hoffmann, Verma, Tang, "InfoGraph: Unsupervised and Semi-supervised
Graph-Level Representation Learning via Mutual Information Maximization",
ICLR 2020 (arXiv:1908.01000).

A GIN encoder (hidden 32, 5 layers) gives per-layer node features; a node's
local (patch) representation is their concatenation h_v = [h_v^1; ...; h_v^L]
and a graph's representation is the concatenation of the per-layer sum pools,
H_g = sum_{v in g} h_v. Two MLP heads with a linear shortcut, phi (local) and
psi (global), feed the score matrix

  scores[v, g] = phi(h_v) . psi(H_g)        [N nodes, G graphs in the batch]

whose positive mask marks v's own graph, every other (real) graph being a
negative (`infograph_mask`). The loss is -I_JS from `mi_jax.bounds.jsd`:

  I_JS = E_{v in g}[-softplus(-scores[v, g])] - E_{v not in g}[softplus(scores[v, g])],

equal to the reference's local_global_loss_ with measure JSD up to the
constant 2 log 2. Padding nodes and graphs are excluded through `valid`.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mi_jax import bounds
from mi_jax.encoders.gnn import GIN, sum_pool
from mi_jax.objectives._method import Evaluation, Method


# The reference (`InfoGraph.init_emb`) re-initialises every nn.Linear of the
# model, encoder MLPs included, with Xavier-uniform weights and zero biases.
XAVIER = nnx.initializers.glorot_uniform()


class FFHead(nnx.Module):
  """f(x) = MLP(x) + W x: three Linear+ReLU layers plus a linear shortcut."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs, kernel_init=XAVIER):
    self.block = nnx.List([nnx.Linear(dim, dim, kernel_init=kernel_init,
                                      rngs=rngs) for _ in range(3)])
    self.shortcut = nnx.Linear(dim, dim, kernel_init=kernel_init, rngs=rngs)

  def __call__(self, x):
    h = x
    for layer in self.block:
      h = jax.nn.relu(layer(h))
    return h + self.shortcut(x)


class InfoGraphModel(nnx.Module):
  """GIN encoder + local head phi + global head psi (InfoGraph, prior off).

  Every Linear kernel (GIN MLPs and both heads) is Xavier-uniform and every
  bias 0, as after the reference's `init_emb`.
  """

  def __init__(self, in_dim: int, hidden: int = 32, num_layers: int = 5, *,
               rngs: nnx.Rngs):
    self.encoder = GIN(in_dim, hidden, num_layers, rngs=rngs,
                       kernel_init=XAVIER)
    self.local_head = FFHead(self.encoder.out_dim, rngs=rngs)
    self.global_head = FFHead(self.encoder.out_dim, rngs=rngs)

  def node_and_graph(self, batch):
    """(h_NxD concatenated node features, H_GxD per-layer sum pools)."""
    h_NxD = self.encoder.concat(batch)
    return h_NxD, sum_pool(h_NxD, batch)

  def embed(self, batch):
    """Graph embeddings `H_GxD` (InfoGraph's evaluated features)."""
    return self.node_and_graph(batch)[1]


def infograph_mask(node_graph_N, node_mask_N, graph_mask_G):
  """(pos_NxG, valid_NxG): pos[v, g] = v is a real node of real graph g.

  valid[v, g] = v and g are real; the negatives of v are the valid entries
  of other graphs.
  """
  g = graph_mask_G.shape[0]
  valid_NxG = node_mask_N[:, None] & graph_mask_G[None, :]
  pos_NxG = (node_graph_N[:, None] == jnp.arange(g)[None, :]) & valid_NxG
  return pos_NxG, valid_NxG


def infograph_loss(model: InfoGraphModel, batch, key):
  """`loss_fn(model, batch, key) -> (loss, metrics)`: loss = -I_JS (key unused)."""
  del key
  h_NxD, hg_GxD = model.node_and_graph(batch)
  scores_NxG = model.local_head(h_NxD) @ model.global_head(hg_GxD).T
  pos, valid = infograph_mask(batch["node_graph"], batch["node_mask"],
                              batch["graph_mask"])
  js = bounds.jsd(scores_NxG, pos, valid=valid)
  return -js, {"mi": js, "jsd": js}


def raw_histogram(num_tags: int, max_degree: int = 32):
  """Raw baseline features: per graph, counts of node tags and of degrees.

  `raw(batch) -> [G, num_tags + max_degree + 1]`: the sum over a graph's
  real nodes of [one-hot tag; one-hot min(degree, max_degree)].
  """
  def raw(batch):
    batch = jax.tree.map(lambda x: x[0], batch)   # one padded batch per row
    n = batch["node_mask"].shape[0]
    deg_N = jax.ops.segment_sum(batch["edge_mask"].astype(jnp.int32),
                                batch["receivers"], n)
    onehot_NxK = jax.nn.one_hot(jnp.minimum(deg_N, max_degree), max_degree + 1)
    return sum_pool(jnp.concatenate([batch["x"][:, :num_tags], onehot_NxK], -1),
                    batch)
  return raw


def build(config, *, seed: int) -> Method:
  """The engine plug-in: InfoGraph on one TU set (`config.infograph`).

  Training batches: `GraphBatchIterator` (seeded order, padded to one static
  budget; with `config.infograph.reshuffle` False, as the reference, the
  same batches every epoch). Run `config.steps` = epochs x batches per epoch (fixed in
  advance). Evaluation (`"svm_kfold"` protocol, config node `svm`): the graph
  embeddings of every graph, an SVM per provided fold with C from an inner
  CV on the training fold, beside the tag+degree-histogram raw baseline, the
  WL subtree kernel (`config.svm.wl`) and, with `random_baseline`, a
  randomly initialised encoder.
  """
  from mi_jax.data import graphs  # pylint: disable=g-import-not-at-top
  from mi_jax.evaluation import graph_kernels  # pylint: disable=g-import-not-at-top
  c = config.infograph
  ds = graphs.load_tu(c.dataset, datasets_dir=config.get("datasets_dir") or None)
  budget = graphs.budget_for(ds, config.batch_size)

  def make_iterator(shard, count):
    if count != 1:
      raise ValueError("InfoGraph's padded graph batches run on one host "
                       f"(got {count} processes); shard over devices instead.")
    return graphs.GraphBatchIterator(ds, config.batch_size, seed=seed,
                                     budget=budget,
                                     reshuffle=c.get("reshuffle", True))

  def init_model(s):
    return InfoGraphModel(ds.num_features, c.hidden, c.num_layers,
                          rngs=nnx.Rngs(s))

  ordered = graphs.ordered_batches(ds, budget, config.batch_size)
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *[b for b, _ in ordered])
  rows = np.concatenate([i * budget.graphs + np.arange(len(ids))
                         for i, (_, ids) in enumerate(ordered)])

  def features(model, chunk):
    c_rows = jax.tree.leaves(chunk)[0].shape[0]
    return jnp.concatenate([model.embed(jax.tree.map(lambda x: x[i], chunk))
                            for i in range(c_rows)])

  evaluation = Evaluation(
      inputs={"all": stacked}, labels={"all": ds.labels}, features=features,
      protocol="svm_kfold", name="svm",
      options={"folds": ds.folds, "kernel": "rbf",
               "wl": functools.cache(lambda: graph_kernels.wl_kernel(
                   ds, c.wl_iterations))},
      raw_features=raw_histogram(ds.num_features), raw_name="hist",
      rows={"all": rows}, chunk_size=1)
  return Method(
      model=init_model(seed), loss_fn=infograph_loss,
      make_iterator=make_iterator, heldout_batches=[],
      evaluations=[evaluation], bound_key="mi",
      title=f"InfoGraph on {c.dataset} (GIN {c.num_layers}x{c.hidden}, JSD)",
      format_results=format_results, init_model=init_model)


PAPER = {"MUTAG": (89.01, 1.13), "PTC": (61.65, 1.43),
         "IMDBBINARY": (73.03, 0.87), "IMDBMULTI": (49.69, 0.53)}


def format_results(results, config) -> str:
  """The closing table: InfoGraph beside the baselines and the paper."""
  name = config.infograph.dataset
  paper = PAPER.get(name)

  def row(label, key, ref=""):
    if key not in results:
      return f"  {label:28s} {'n/a':>14s} {ref:>14s}"
    std = results.get(key.replace("acc", "acc_fold_std"), float("nan"))
    return (f"  {label:28s} {100 * results[key]:6.2f} +- {100 * std:5.2f} "
            f"{ref:>14s}")

  return "\n".join([
      f"InfoGraph {name}, seed {config.seed}, {config.steps} steps "
      "(10-fold SVM accuracy, %, mean +- std over folds; C by inner CV)",
      f"  {'':28s} {'ours':>14s} {'paper':>14s}",
      row("InfoGraph embeddings", "svm/acc",
          f"{paper[0]} +- {paper[1]}" if paper else ""),
      row("tag+degree histogram (raw)", "svm/hist_acc"),
      row("WL subtree kernel (h=%d)" % config.infograph.wl_iterations,
          "svm/wl_acc"),
      row("random-init encoder", "svm/random_acc")])
