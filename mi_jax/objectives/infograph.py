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
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax import bounds
from mi_jax.data.graphs import GraphBatchIterator, ordered_batches
from mi_jax.encoders.gnn import GIN, sum_pool
from mi_jax.training.state import init_train_states, merge_model
from mi_jax.training.step import make_train_step, vmap_over_seeds


class FFHead(nnx.Module):
  """f(x) = MLP(x) + W x: three Linear+ReLU layers plus a linear shortcut."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.block = nnx.List([nnx.Linear(dim, dim, rngs=rngs) for _ in range(3)])
    self.shortcut = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x):
    h = x
    for layer in self.block:
      h = jax.nn.relu(layer(h))
    return h + self.shortcut(x)


class InfoGraphModel(nnx.Module):
  """GIN encoder + local head phi + global head psi (InfoGraph, prior off)."""

  def __init__(self, in_dim: int, hidden: int = 32, num_layers: int = 5, *,
               rngs: nnx.Rngs):
    self.encoder = GIN(in_dim, hidden, num_layers, rngs=rngs)
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
  for batch, ids in ordered_batches(dataset, budget, batch_size):
    out.append(np.asarray(embed(params, rest, batch))[:, :len(ids)])
  return np.concatenate(out, axis=1)


def fit_seeds(dataset, seeds: Sequence[int], *, hidden: int = 32,
              num_layers: int = 5, batch_size: int = 128, epochs: int = 20,
              learning_rate: float = 1e-3, log_every: int = 0):
  """Trains InfoGraph for every seed at once (vmapped), `epochs` full epochs.

  Seed s initialises its model with key(s) and visits the graphs in its own
  order (`GraphBatchIterator(seed=s)`, last smaller batch kept, as the
  reference's shuffled DataLoader); all seeds share one padded budget.
  Returns {"embeddings": [S, G, D] after the last epoch (fixed in advance),
  "init_embeddings": [S, G, D] at initialisation, "losses": [T, S]}.
  """
  tx = optax.adam(learning_rate)
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  graphdef, states = init_train_states(
      lambda k: InfoGraphModel(dataset.num_features, hidden, num_layers,
                               rngs=nnx.Rngs(k)), tx, keys_S)
  iters = [GraphBatchIterator(dataset, batch_size, seed=int(s))
           for s in seeds]
  budget = iters[0].budget
  init_emb = embed_dataset(graphdef, states.params, states.rest, dataset,
                           budget, batch_size)
  step = jax.jit(vmap_over_seeds(make_train_step(graphdef, tx, infograph_loss),
                                 batch_axis=0), donate_argnums=0)
  losses = []
  for t in range(epochs * iters[0].steps_per_epoch):
    batch = jax.tree.map(lambda *xs: np.stack(xs), *[next(it) for it in iters])
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_S)
    states, metrics = step(states, batch, step_keys)
    losses.append(np.asarray(metrics["loss"]))
    if log_every and t % log_every == 0:
      print(f"step {t} loss {losses[-1].round(4).tolist()}", flush=True)
  return {
      "embeddings": embed_dataset(graphdef, states.params, states.rest,
                                  dataset, budget, batch_size),
      "init_embeddings": init_emb, "losses": np.stack(losses),
  }
