"""Graph neural network encoders over padded edge lists: GCN and GIN.

A *graph batch* is a dict of arrays with static sizes (N nodes, E directed
edges, G graphs; see `mi_jax.data.graphs`):

  x            f32 [N, F] node features, or `SparseFeatures` (COO entries)
  senders      i32 [E]    source node of each directed edge
  receivers    i32 [E]    target node (an undirected edge appears twice)
  edge_mask    bool [E]   real edges (padding edges are ignored)
  node_mask    bool [N]   real nodes (padding nodes never reach a real one)
  node_graph   i32 [N]    graph id of each node (graph-level batches only)
  graph_mask   bool [G]   real graphs (graph-level batches only)

Messages are gathered with `x[senders]` and summed with
`jax.ops.segment_sum(..., receivers, N)`; padding edges carry weight 0, and
padded nodes are excluded from every sum and every batch-norm statistic, so
adding padding changes no output on real nodes or graphs.

- `GCN` (Kipf & Welling, ICLR 2017): H' = PReLU(D^-1/2 (A + I) D^-1/2 H W + b),
  as in Deep Graph Infomax (Velickovic et al., ICLR 2019).
- `GIN` (Xu et al., ICLR 2019): h'_v = MLP((1 + eps) h_v + sum_{u in N(v)} h_u),
  followed by ReLU and batch norm, as in InfoGraph (Sun et al., ICLR 2020).
"""
from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx


class SparseFeatures(NamedTuple):
  """Node features as COO entries: X[row_K[k], col_K[k]] = value_K[k].

  Padding entries have value 0. `X @ W` costs O(K * D) instead of O(N F D),
  which is what makes bag-of-words features (Cora: 1.3% non-zeros) cheap.
  """
  row_K: jax.Array
  col_K: jax.Array
  value_K: jax.Array


def _num_nodes(batch) -> int:
  return batch["node_mask"].shape[0]


def feature_matmul(x, kernel_FxD, num_nodes: int):
  """`X @ W` for dense `x_NxF` or `SparseFeatures` (segment_sum over rows)."""
  if isinstance(x, SparseFeatures):
    rows_KxD = x.value_K[:, None].astype(kernel_FxD.dtype) * kernel_FxD[x.col_K]
    return jax.ops.segment_sum(rows_KxD, x.row_K, num_nodes)
  return x @ kernel_FxD


def neighbour_sum(h_NxD, batch):
  """sum_{u -> v real edge} h_u for every node v (padding edges weigh 0)."""
  msg_ExD = jnp.where(batch["edge_mask"][:, None], h_NxD[batch["senders"]], 0)
  return jax.ops.segment_sum(msg_ExD, batch["receivers"], h_NxD.shape[0])


def gcn_norm(batch):
  """Weights of D^-1/2 (A + I) D^-1/2 on the edge list.

  deg_v = 1 + #{real edges u -> v}; edge u -> v weighs 1 / sqrt(deg_u deg_v)
  and the self loop of v weighs 1 / deg_v. Returns (edge_w_E, self_w_N).
  """
  n = _num_nodes(batch)
  emask_E = batch["edge_mask"].astype(jnp.float32)
  deg_N = 1.0 + jax.ops.segment_sum(emask_E, batch["receivers"], n)
  inv_sqrt_N = jax.lax.rsqrt(deg_N)
  edge_w_E = emask_E * inv_sqrt_N[batch["senders"]] * inv_sqrt_N[
      batch["receivers"]]
  return edge_w_E, 1.0 / deg_N


class PReLU(nnx.Module):
  """PReLU(x) = max(0, x) + a min(0, x), one shared slope a (init 0.25)."""

  def __init__(self, init: float = 0.25):
    self.slope = nnx.Param(jnp.asarray(init, jnp.float32))

  def __call__(self, x):
    return jnp.where(x >= 0, x, self.slope[...].astype(x.dtype) * x)


class GCNLayer(nnx.Module):
  """One GCN layer: PReLU(D^-1/2 (A + I) D^-1/2 X W + b) (Kipf & Welling 2017).

  W is Glorot-uniform with no bias inside the product; b starts at 0 (the
  DGI reference's layer).
  """

  def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs,
               activation: str = "prelu"):
    init = nnx.initializers.glorot_uniform()
    self.kernel = nnx.Param(init(rngs.params(), (in_dim, out_dim), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_dim,), jnp.float32))
    if activation not in ("prelu", "relu", "none"):
      raise ValueError(f"activation must be 'prelu', 'relu' or 'none', got "
                       f"{activation!r}.")
    self.act = PReLU() if activation == "prelu" else None
    self.activation = activation

  def linear(self, x, batch):
    """X W (before propagation)."""
    return feature_matmul(x, self.kernel[...], _num_nodes(batch))

  def __call__(self, x, batch, norm=None, xw_NxD=None):
    """`xw_NxD`: a precomputed `self.linear(x, batch)` (then `x` is unused)."""
    edge_w_E, self_w_N = gcn_norm(batch) if norm is None else norm
    n = _num_nodes(batch)
    h_NxD = self.linear(x, batch) if xw_NxD is None else xw_NxD
    msg_ExD = edge_w_E[:, None].astype(h_NxD.dtype) * h_NxD[batch["senders"]]
    h_NxD = (jax.ops.segment_sum(msg_ExD, batch["receivers"], n)
             + self_w_N[:, None].astype(h_NxD.dtype) * h_NxD + self.bias[...])
    if self.activation == "prelu":
      return self.act(h_NxD)
    return jax.nn.relu(h_NxD) if self.activation == "relu" else h_NxD


class GCN(nnx.Module):
  """Stack of `GCNLayer`s; `enc(batch) -> h_NxD` node embeddings (D = out_dim).

  DGI (Velickovic et al. 2019) uses one layer of 512 units on Cora/CiteSeer.
  `hidden` is an int (one layer) or a tuple of widths.
  """

  def __init__(self, in_dim: int, hidden: Union[int, Sequence[int]] = 512, *,
               rngs: nnx.Rngs, activation: str = "prelu"):
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    dims = (in_dim, *widths)
    self.in_dim, self.out_dim = in_dim, dims[-1]
    self.layers = nnx.List([
        GCNLayer(a, b, rngs=rngs, activation=activation)
        for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, batch, xw_NxD=None):
    """Node embeddings; `xw_NxD` optionally replaces the first layer's X W.

    Since permuting the rows of X permutes the rows of X W, DGI computes X W
    once and feeds `xw[perm]` for the corrupted graph (half the cost of the
    dominant sparse product).
    """
    norm = gcn_norm(batch)
    h = self.layers[0](batch["x"], batch, norm, xw_NxD)
    for layer in self.layers[1:]:
      h = layer(h, batch, norm)
    return h


class MaskedBatchNorm(nnx.Module):
  """Batch norm over the real rows only (`mask_N`), running stats as nnx.BatchStat.

  Train mode: y = (x - mu) / sqrt(var + eps) * scale + bias with mu, var the
  (biased) moments of the n masked rows; running stats move by
  `momentum * old + (1 - momentum) * new` (PyTorch's default 0.1 update is
  momentum = 0.9), where the new variance is the unbiased var * n / (n - 1)
  as in PyTorch's `BatchNorm1d` (InfoGraph's reference), with
  `unbiased_running_var=False` the biased one (Flax's `BatchNorm`). Eval mode
  (`use_running_average=True`) uses the running stats. Padded rows neither
  enter the statistics nor change any real output.
  """

  def __init__(self, dim: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
               use_running_average: bool = False,
               unbiased_running_var: bool = True):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))
    self.momentum, self.epsilon = momentum, epsilon
    self.use_running_average = use_running_average
    self.unbiased_running_var = unbiased_running_var

  def __call__(self, x_NxD, mask_N):
    if self.use_running_average:
      mean_D, var_D = self.mean[...], self.var[...]
    else:
      w_N = mask_N.astype(jnp.float32)
      count = jnp.maximum(jnp.sum(w_N), 1.0)
      xf_NxD = x_NxD.astype(jnp.float32)
      mean_D = jnp.sum(w_N[:, None] * xf_NxD, axis=0) / count
      var_D = jnp.sum(w_N[:, None] * (xf_NxD - mean_D) ** 2, axis=0) / count
      m = self.momentum
      run_var_D = (var_D * count / jnp.maximum(count - 1, 1.0)
                   if self.unbiased_running_var else var_D)
      self.mean[...] = m * self.mean[...] + (1 - m) * mean_D
      self.var[...] = m * self.var[...] + (1 - m) * run_var_D
    y = (x_NxD - mean_D) * jax.lax.rsqrt(var_D + self.epsilon)
    return (y * self.scale[...] + self.bias[...]).astype(x_NxD.dtype)


class GINLayer(nnx.Module):
  """GIN layer + ReLU + batch norm (Xu et al. 2019; InfoGraph's encoder).

    h'_v = BN(ReLU(MLP((1 + eps) h_v + sum_{u in N(v)} h_u))),
  MLP = Linear -> ReLU -> Linear. eps is fixed (0 by default) or learned.
  `kernel_init` initialises both Linear kernels (biases start at 0).
  """

  def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs,
               eps: float = 0.0, learn_eps: bool = False,
               kernel_init=nnx.initializers.lecun_normal()):
    self.lin1 = nnx.Linear(in_dim, out_dim, kernel_init=kernel_init, rngs=rngs)
    self.lin2 = nnx.Linear(out_dim, out_dim, kernel_init=kernel_init,
                           rngs=rngs)
    self.bn = MaskedBatchNorm(out_dim)
    self.learn_eps = learn_eps
    self.eps = (nnx.Param(jnp.asarray(eps, jnp.float32)) if learn_eps
                else float(eps))

  def __call__(self, h_NxD, batch):
    eps = self.eps[...] if self.learn_eps else self.eps
    agg_NxD = (1.0 + eps) * h_NxD + neighbour_sum(h_NxD, batch)
    out_NxH = jax.nn.relu(self.lin2(jax.nn.relu(self.lin1(agg_NxD))))
    return self.bn(out_NxH, batch["node_mask"])


class GIN(nnx.Module):
  """`num_layers` GIN layers; `enc(batch) -> [h_1, ..., h_L]` node features.

  InfoGraph (Sun et al. 2020) uses hidden 32 and 5 layers; its node
  representation is the concatenation over layers (`concat`, width
  `out_dim = hidden * num_layers`), its graph representation the same
  concatenation of per-layer sum pools (`sum_pool`).
  """

  def __init__(self, in_dim: int, hidden: int = 32, num_layers: int = 5, *,
               rngs: nnx.Rngs, eps: float = 0.0, learn_eps: bool = False,
               kernel_init=nnx.initializers.lecun_normal()):
    dims = (in_dim,) + (hidden,) * num_layers
    self.in_dim, self.hidden, self.num_layers = in_dim, hidden, num_layers
    self.out_dim = hidden * num_layers
    self.layers = nnx.List([
        GINLayer(a, b, rngs=rngs, eps=eps, learn_eps=learn_eps,
                 kernel_init=kernel_init)
        for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, batch):
    h = batch["x"]
    hs = []
    for layer in self.layers:
      h = layer(h, batch)
      hs.append(h)
    return hs

  def concat(self, batch):
    """Node representations `[N, hidden * num_layers]`."""
    return jnp.concatenate(self(batch), axis=-1)


def sum_pool(h_NxD, batch):
  """Per-graph sum of real nodes' rows: `[G, D]` (padded graphs are 0)."""
  g = batch["graph_mask"].shape[0]
  h_NxD = jnp.where(batch["node_mask"][:, None], h_NxD, 0)
  return jax.ops.segment_sum(h_NxD, batch["node_graph"], g)


def mean_readout(h_NxD, node_mask_N):
  """Mean of the real nodes' rows: `[D]`."""
  w_N = node_mask_N.astype(h_NxD.dtype)
  return (w_N @ h_NxD) / jnp.maximum(jnp.sum(w_N), 1)
