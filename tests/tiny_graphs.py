"""Small synthetic graph sets for the GNN / DGI / InfoGraph tests (no data files)."""
import numpy as np

from mi_jax.data.graphs import TUDataset


def random_dataset(num_graphs=5, num_tags=3, seed=0, min_nodes=2, max_nodes=7):
  """A `TUDataset` of random undirected graphs (both edge directions listed)."""
  rng = np.random.default_rng(seed)
  num_nodes, tags, edges = [], [], []
  for _ in range(num_graphs):
    n = int(rng.integers(min_nodes, max_nodes + 1))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)
             if rng.random() < 0.5]
    und = np.asarray(pairs, np.int32).reshape(-1, 2)
    edges.append(np.concatenate([und, und[:, ::-1]]))
    num_nodes.append(n)
    tags.append(rng.integers(0, num_tags, n))
  return TUDataset(
      name="tiny", num_nodes=np.asarray(num_nodes),
      tags=np.concatenate(tags).astype(np.int32), edges=edges,
      labels=(np.arange(num_graphs) % 2).astype(np.int32), label_values=(0, 1),
      tag_values=tuple(range(num_tags)), folds=[])


def dense_adjacency(dataset, indices):
  """Block-diagonal float64 adjacency of graphs `indices`, in batch order."""
  n_G = dataset.num_nodes[np.asarray(indices)]
  a = np.zeros((n_G.sum(), n_G.sum()))
  start = 0
  for i, n in zip(indices, n_G):
    e = dataset.edges[i]
    a[start + e[:, 1], start + e[:, 0]] = 1.0
    start += n
  return a


def garble_padding(batch, seed=1):
  """Fills every padding slot with junk that a leak would pick up.

  Padded nodes get random features and graph id 0 (a real graph); padded
  edges connect random nodes, real ones included. Masks stay as they are.
  """
  rng = np.random.default_rng(seed)
  b = {k: np.array(v) for k, v in batch.items()}
  n_real = int(b["node_mask"].sum())
  pad_n, pad_e = ~b["node_mask"], ~b["edge_mask"]
  b["x"][pad_n] = rng.normal(size=(pad_n.sum(), b["x"].shape[1])) * 5
  n = len(b["node_mask"])
  b["senders"][pad_e] = rng.integers(0, n, pad_e.sum())
  b["receivers"][pad_e] = rng.integers(0, max(n_real, 1), pad_e.sum())
  if "node_graph" in b:
    b["node_graph"][pad_n] = 0
  return b
