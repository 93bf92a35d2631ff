"""Weisfeiler-Lehman subtree features: the raw-structure baseline for TU sets.

Shervashidze, Schweitzer, van Leeuwen, Mehlhorn, Borgwardt, "Weisfeiler-
Lehman Graph Kernels", JMLR 2011. Iteration 0 labels each node with its tag;
iteration t relabels v with the pair (label_v, sorted multiset of its
neighbours' labels), compressed to a new integer shared by all graphs. The
feature vector of a graph counts each label of iterations 0..h; the WL
subtree kernel is the inner product of these counts.
"""
import numpy as np
import scipy.sparse


def wl_features(dataset, iterations: int = 3) -> scipy.sparse.csr_matrix:
  """Counts of WL labels of iterations 0..h, a sparse [G, #labels] matrix."""
  offsets = dataset.node_offsets
  labels = dataset.tags.astype(np.int64).copy()
  send = np.concatenate([e[:, 0] + offsets[g]
                         for g, e in enumerate(dataset.edges)])
  recv = np.concatenate([e[:, 1] + offsets[g]
                         for g, e in enumerate(dataset.edges)])
  nbrs = [[] for _ in range(len(labels))]
  for s, r in zip(send.tolist(), recv.tolist()):
    nbrs[r].append(s)
  node_graph = np.repeat(np.arange(dataset.num_graphs), dataset.num_nodes)
  rows, cols, base = [], [], 0
  for t in range(iterations + 1):
    if t:
      table = {}
      new = np.empty_like(labels)
      for v, nb in enumerate(nbrs):
        sig = (labels[v], tuple(sorted(labels[nb].tolist())))
        new[v] = table.setdefault(sig, len(table))
      labels = new
    rows.append(node_graph)
    cols.append(labels + base)
    base += int(labels.max()) + 1
  rows, cols = np.concatenate(rows), np.concatenate(cols)
  return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                 shape=(dataset.num_graphs, base))


def wl_kernel(dataset, iterations: int = 3, normalize: bool = True):
  """Gram matrix [G, G] of the WL subtree kernel (cosine-normalised)."""
  f = wl_features(dataset, iterations)
  k = (f @ f.T).toarray()
  if normalize:
    d = np.sqrt(np.diag(k))
    k = k / np.outer(d, d)
  return k
