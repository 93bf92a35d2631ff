"""Graph data: Planetoid and TU loaders, padded graph batches, a resumable iterator.

Files are read from the data sets folder (`mi_jax.data.shared`, layout of
../shared/data/README.md sections 2 and 3); a missing or malformed file
raises an error that names it.

- `load_planetoid(name)`: Cora / CiteSeer arrays (features, labels, edges,
  standard 140/500/1000 split); `planetoid_batch(data)` the whole graph as one
  padded batch (the transductive case), features optionally row-normalised
  and stored sparse (`SparseFeatures`).
- `load_tu(name)`: a `TUDataset` (DGCNN text format + the 10-fold indices);
  node features are one-hot node tags (a constant 1 where the set has none).
- `pad_graphs(dataset, indices, budget)`: graphs concatenated into one batch
  padded to a static `Budget(nodes, edges, graphs)`, with masks, so that one
  compiled step serves every batch (see `mi_jax.encoders.gnn` for the keys).
- `GraphBatchIterator`: seeded epoch permutations of the graphs (through
  `mi_jax.data.BatchIterator`), padded batches, `get_state` / `set_state`.
"""
import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from mi_jax.data import shared
from mi_jax.data.iterator import BatchIterator

PLANETOID = ("cora", "citeseer")
TU = ("MUTAG", "PTC", "PROTEINS", "IMDBBINARY", "IMDBMULTI", "NCI1")
_PLANETOID_KEYS = ("features", "labels", "edges", "train_idx", "val_idx",
                   "test_idx")


# --------------------------------------------------------------- Planetoid


def load_planetoid(name: str, *, datasets_dir=None) -> dict:
  """Loads `planetoid/<name>.npz` (README section 2) as a dict of NumPy arrays.

  Keys: features f32 [N, F] (raw 0/1 bag of words), labels i32 [N] (-1 for
  CiteSeer's 15 unlabelled nodes), edges i32 [E, 2] (undirected, i < j),
  train_idx / val_idx / test_idx (the Planetoid split).
  """
  if name not in PLANETOID:
    raise ValueError(f"Unknown Planetoid set {name!r}; known: {PLANETOID}.")
  path = shared.require(f"planetoid/{name}.npz", datasets_dir)
  try:
    with np.load(path, allow_pickle=False) as npz:
      data = {k: npz[k] for k in npz.files}
  except Exception as e:  # zipfile / pickle errors: the file is malformed
    raise ValueError(f"Malformed Planetoid file {path}: {e}") from e
  missing = [k for k in _PLANETOID_KEYS if k not in data]
  if missing:
    raise ValueError(f"Malformed Planetoid file {path}: missing arrays "
                     f"{missing} (has {sorted(data)}).")
  n = len(data["labels"])
  if (data["features"].ndim != 2 or len(data["features"]) != n
      or data["edges"].ndim != 2 or data["edges"].shape[1] != 2
      or (data["edges"].size and data["edges"].max() >= n)):
    raise ValueError(
        f"Malformed Planetoid file {path}: features {data['features'].shape}, "
        f"labels {data['labels'].shape}, edges {data['edges'].shape} do not "
        "describe one graph.")
  return data


def row_normalize(features_NxF: np.ndarray) -> np.ndarray:
  """Divides each row by its sum (all-zero rows stay zero), as DGI and GCN do."""
  s_N = features_NxF.sum(axis=1, keepdims=True)
  return (features_NxF / np.where(s_N == 0, 1, s_N)).astype(np.float32)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def planetoid_batch(data: dict, *, normalize: bool = True, sparse: bool = True,
                    multiple: int = 8) -> dict:
  """The whole graph as one batch (keys of `mi_jax.encoders.gnn`).

  Edges are added in both directions; node, edge and feature-entry counts are
  padded up to a multiple of `multiple` (so the batch shards over that many
  devices); padded nodes have zero features and `node_mask` False.
  `normalize`: row-normalised features (the DGI / GCN references do this on
  Cora and CiteSeer). `sparse`: `x` as `SparseFeatures` COO entries.
  """
  from mi_jax.encoders.gnn import SparseFeatures  # pylint: disable=g-import-not-at-top
  feats_NxF = data["features"].astype(np.float32)
  if normalize:
    feats_NxF = row_normalize(feats_NxF)
  n = len(feats_NxF)
  n_pad = _round_up(n, multiple)
  und_Ex2 = np.asarray(data["edges"], np.int32)
  directed_Ex2 = np.concatenate([und_Ex2, und_Ex2[:, ::-1]])
  e, e_pad = len(directed_Ex2), _round_up(len(directed_Ex2), multiple)
  batch = {
      "senders": _pad1(directed_Ex2[:, 0], e_pad),
      "receivers": _pad1(directed_Ex2[:, 1], e_pad),
      "edge_mask": np.arange(e_pad) < e,
      "node_mask": np.arange(n_pad) < n,
  }
  if sparse:
    row_K, col_K = np.nonzero(feats_NxF)
    k_pad = _round_up(len(row_K), multiple)
    batch["x"] = SparseFeatures(
        _pad1(row_K.astype(np.int32), k_pad), _pad1(col_K.astype(np.int32),
                                                     k_pad),
        _pad1(feats_NxF[row_K, col_K], k_pad))
  else:
    batch["x"] = np.zeros((n_pad, feats_NxF.shape[1]), np.float32)
    batch["x"][:n] = feats_NxF
  return batch


def _pad1(a, size):
  out = np.zeros((size,), a.dtype)
  out[:len(a)] = a
  return out


# ----------------------------------------------------------------------- TU


@dataclasses.dataclass(frozen=True)
class TUDataset:
  """A TU graph-classification set in memory.

  Attributes:
    name: e.g. "MUTAG".
    num_nodes: i64 [G] nodes per graph.
    tags: i32 [sum n] node tag ids (index into `tag_values`), graphs in order.
    edges: list of i32 [E_g, 2] directed edges (both directions) per graph.
    labels: i32 [G] class ids (index into `label_values`).
    label_values: the labels as written in the file, sorted.
    tag_values: the node tags as written in the file, sorted.
    folds: 10 pairs (train_idx, test_idx) of graph ids from 10fold_idx/.
  """
  name: str
  num_nodes: np.ndarray
  tags: np.ndarray
  edges: list
  labels: np.ndarray
  label_values: tuple
  tag_values: tuple
  folds: list

  @property
  def num_graphs(self) -> int:
    return len(self.num_nodes)

  @property
  def num_features(self) -> int:
    """One-hot width: the number of distinct tags (1: a constant feature)."""
    return len(self.tag_values)

  @property
  def num_classes(self) -> int:
    return len(self.label_values)

  @property
  def node_offsets(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.num_nodes)])


def _parse_ints(line, path, lineno):
  try:
    return [int(t) for t in line.split()]
  except ValueError:
    raise ValueError(f"Malformed TU file {path}, line {lineno}: expected "
                     f"integers, got {line.strip()[:80]!r}.") from None


def load_tu(name: str, *, datasets_dir=None) -> TUDataset:
  """Parses `tu/<name>/<name>.txt` and its `10fold_idx/` (README section 3)."""
  if name not in TU:
    raise ValueError(f"Unknown TU set {name!r}; known: {TU}.")
  path = shared.require(f"tu/{name}/{name}.txt", datasets_dir)
  with open(path) as f:
    lines = f.read().splitlines()
  pos = 0

  def next_ints(what):
    nonlocal pos
    if pos >= len(lines):
      raise ValueError(f"Malformed TU file {path}: ended at line {pos} while "
                       f"reading {what}.")
    pos += 1
    return _parse_ints(lines[pos - 1], path, pos)

  (num_graphs,) = next_ints("the number of graphs")[:1]
  num_nodes, raw_tags, edges, raw_labels = [], [], [], []
  for g in range(num_graphs):
    head = next_ints(f"the header of graph {g}")
    if len(head) != 2:
      raise ValueError(f"Malformed TU file {path}, line {pos}: graph {g} "
                       f"header should be 'n label', got {head}.")
    n, label = head
    raw_labels.append(label)
    num_nodes.append(n)
    send, recv = [], []
    for i in range(n):
      row = next_ints(f"node {i} of graph {g}")
      if len(row) < 2 or len(row) < 2 + row[1]:
        raise ValueError(f"Malformed TU file {path}, line {pos}: node row "
                         f"'t m nbr_1..nbr_m' is too short: {row}.")
      nbrs = row[2:2 + row[1]]
      if any(not 0 <= j < n for j in nbrs):
        raise ValueError(f"Malformed TU file {path}, line {pos}: neighbour "
                         f"outside 0..{n - 1}: {nbrs}.")
      raw_tags.append(row[0])
      send += nbrs
      recv += [i] * len(nbrs)
    edges.append(np.stack([np.asarray(send, np.int32),
                           np.asarray(recv, np.int32)], axis=1).reshape(-1, 2))
  tag_values, tags = np.unique(np.asarray(raw_tags), return_inverse=True)
  label_values, labels = np.unique(np.asarray(raw_labels), return_inverse=True)
  folds = [(_read_index(name, "train", k, num_graphs, datasets_dir),
            _read_index(name, "test", k, num_graphs, datasets_dir))
           for k in range(1, 11)]
  return TUDataset(
      name=name, num_nodes=np.asarray(num_nodes), tags=tags.astype(np.int32),
      edges=edges, labels=labels.astype(np.int32),
      label_values=tuple(int(v) for v in label_values),
      tag_values=tuple(int(v) for v in tag_values), folds=folds)


def _read_index(name, split, k, num_graphs, datasets_dir):
  path = shared.require(f"tu/{name}/10fold_idx/{split}_idx-{k}.txt",
                        datasets_dir)
  with open(path) as f:
    idx = np.asarray(_parse_ints(f.read(), path, "any"), np.int64)
  if idx.size == 0 or idx.min() < 0 or idx.max() >= num_graphs:
    raise ValueError(f"Malformed fold file {path}: ids must lie in "
                     f"0..{num_graphs - 1}.")
  return idx


# ---------------------------------------------------------- padded batches


class Budget(NamedTuple):
  """Static sizes of a padded graph batch: nodes, directed edges, graphs."""
  nodes: int
  edges: int
  graphs: int


def budget_for(dataset: TUDataset, batch_size: int, *,
               multiple: int = 8) -> Budget:
  """The smallest budget that fits any `batch_size` graphs of `dataset`.

  Nodes / edges: the sum over the `batch_size` largest graphs, plus one
  padding node, rounded up to `multiple` (so batches shard over that many
  devices); graphs: `batch_size` rounded up likewise.
  """
  edges_G = np.asarray([len(e) for e in dataset.edges])
  b = min(batch_size, dataset.num_graphs)
  nodes = int(np.sort(dataset.num_nodes)[::-1][:b].sum()) + 1
  edges = int(np.sort(edges_G)[::-1][:b].sum()) + 1
  return Budget(_round_up(nodes, multiple), _round_up(edges, multiple),
                _round_up(batch_size, multiple))


def pad_graphs(dataset: TUDataset, indices, budget: Budget) -> dict:
  """Graphs `indices` of `dataset` as one padded batch (NumPy arrays).

  Real nodes, edges and graphs come first, in `indices` order; the rest is
  padding with masks False, zero features, edges 0 -> 0 and graph id 0.
  Keys: x [N, T] one-hot tags, senders, receivers, edge_mask [E],
  node_mask, node_graph [N], graph_mask, label [G].
  """
  indices = np.asarray(indices, np.int64)
  offsets = dataset.node_offsets
  n_G = dataset.num_nodes[indices]
  n, g = int(n_G.sum()), len(indices)
  starts_G = np.concatenate([[0], np.cumsum(n_G)[:-1]])
  edges_Ex2 = np.concatenate(
      [dataset.edges[i] + s for i, s in zip(indices, starts_G)]
      + [np.zeros((0, 2), np.int32)]).astype(np.int32)
  e = len(edges_Ex2)
  if n > budget.nodes or e > budget.edges or g > budget.graphs:
    raise ValueError(
        f"Batch of {g} graphs with {n} nodes and {e} edges exceeds the budget "
        f"{budget}; build it with budget_for(dataset, batch_size).")
  tags = np.concatenate([dataset.tags[offsets[i]:offsets[i + 1]]
                         for i in indices] + [np.zeros((0,), np.int32)])
  x_NxT = np.zeros((budget.nodes, dataset.num_features), np.float32)
  x_NxT[np.arange(n), tags] = 1.0
  label_G = np.zeros((budget.graphs,), np.int32)
  label_G[:g] = dataset.labels[indices]
  return {
      "x": x_NxT,
      "senders": _pad1(edges_Ex2[:, 0], budget.edges),
      "receivers": _pad1(edges_Ex2[:, 1], budget.edges),
      "edge_mask": np.arange(budget.edges) < e,
      "node_mask": np.arange(budget.nodes) < n,
      "node_graph": _pad1(np.repeat(np.arange(g, dtype=np.int32), n_G),
                          budget.nodes),
      "graph_mask": np.arange(budget.graphs) < g,
      "label": label_G,
  }


def ordered_batches(dataset: TUDataset, budget: Budget, batch_size: int,
                    indices=None):
  """Padded batches of `indices` (default all graphs) in order.

  Each batch holds at most `batch_size` graphs (the size `budget` was made
  for); used to embed a whole set for evaluation. Returns a list of
  (batch, graph_ids) pairs.
  """
  indices = np.arange(dataset.num_graphs) if indices is None else indices
  out = []
  for s in range(0, len(indices), batch_size):
    ids = np.asarray(indices[s:s + batch_size])
    out.append((pad_graphs(dataset, ids, budget), ids))
  return out


class GraphBatchIterator:
  """Deterministic, resumable padded batches of graphs (one host).

  Epoch e visits the graphs in `np.random.default_rng((seed, e))` order
  (`mi_jax.data.BatchIterator` over graph ids) and pads each batch of
  `batch_size` graphs to `budget`. With `reshuffle=False` every epoch repeats
  epoch 0's order, i.e. the same batches in the same order: InfoGraph's
  reference shuffles the data set once (`TUDataset(...).shuffle()`) and then
  iterates a `DataLoader` without shuffling. With `drop_remainder=False`
  (InfoGraph's DataLoader) the last, smaller batch of an epoch is padded like
  the others. `get_state()` / `set_state()` are the index iterator's `{seed,
  epoch, batch}`.
  """

  def __init__(self, dataset: TUDataset, batch_size: int, *, seed: int,
               budget: Optional[Budget] = None, drop_remainder: bool = False,
               num_epochs: Optional[int] = None, multiple: int = 8,
               reshuffle: bool = True):
    self.dataset = dataset
    self.reshuffle = reshuffle
    self.budget = budget or budget_for(dataset, batch_size, multiple=multiple)
    self._ids = BatchIterator(
        {"id": np.arange(dataset.num_graphs)}, batch_size, seed=seed,
        shard_index=0, shard_count=1, drop_remainder=drop_remainder,
        num_epochs=num_epochs)

  @property
  def steps_per_epoch(self) -> int:
    return self._ids.steps_per_epoch

  def get_state(self) -> dict:
    return self._ids.get_state()

  def set_state(self, state) -> None:
    self._ids.set_state(state)

  def __iter__(self):
    return self

  def __next__(self):
    batch = self._ids.get_state()["batch"]
    ids = next(self._ids)["id"]   # advances the position (epoch e's order)
    if not self.reshuffle:
      ids = self._ids.local_indices(0, batch)
    return pad_graphs(self.dataset, ids, self.budget)


def describe(dataset: TUDataset) -> dict:
  """Counts as in ../shared/data/README.md section 3 (for tests and docs)."""
  und_edges_G = np.asarray([len(e) for e in dataset.edges]) / 2
  _, class_counts = np.unique(dataset.labels, return_counts=True)
  return {
      "graphs": dataset.num_graphs,
      "class_counts": dict(zip(dataset.label_values, class_counts.tolist())),
      "avg_nodes": round(float(dataset.num_nodes.mean()), 2),
      "max_nodes": int(dataset.num_nodes.max()),
      "avg_edges": round(float(und_edges_G.mean()), 2),
      "node_tags": len(dataset.tag_values),
      "test_fold_size": len(dataset.folds[0][1]),
  }

