"""Deep Graph Infomax (DGI): node embeddings by local-global mutual information.

Velickovic, Fedus, Hamilton, Lio, Bengio, Hjelm, "Deep Graph Infomax",
ICLR 2019 (arXiv:1809.10341).

A GCN encoder maps the graph (X, A) to node embeddings H = E(X, A); the
summary is s = sigmoid(mean_i h_i). A corrupted graph (X~, A) keeps the
edges and permutes the rows of X (`corrupt`), giving H~. A bilinear
discriminator D(h, s) = h^T W s + b scores every real node (positive) and
every corrupted node (negative) against s, and the objective is the
Jensen-Shannon bound of `mi_jax.bounds.jsd` on the [2N, 1] score matrix whose
positive mask marks the real rows:

  I_JS = E_real[-softplus(-D(h_i, s))] - E_corrupt[softplus(D(h~_j, s))]
  loss = BCE-with-logits(real -> 1, corrupted -> 0) = -I_JS / 2,

exactly the reference's loss (equal numbers of real and corrupted nodes).
`build(config, *, seed)` is the engine plug-in (one seed, `config.steps`
full-graph steps); `experiments/graphs/seeds.py` trains many seeds as one
vmapped program with the reference's early stopping on the training loss.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mi_jax import bounds
from mi_jax import critics
from mi_jax.encoders.gnn import GCN, SparseFeatures, mean_readout
from mi_jax.objectives._method import Evaluation, FixedBatchIterator, Method


class DGIModel(nnx.Module):
  """GCN encoder + bilinear discriminator D(h, s) = h^T W s + b.

  W is Glorot-uniform as in the reference's `nn.Bilinear(D, D, 1)` init
  (bound sqrt(6 / (D^2 + D))), b starts at 0.
  """

  def __init__(self, in_dim: int, hidden: int = 512, *, rngs: nnx.Rngs):
    self.encoder = GCN(in_dim, hidden, rngs=rngs)
    limit = (6.0 / (hidden * hidden + hidden)) ** 0.5
    self.critic = critics.Bilinear(
        hidden, hidden, rngs=rngs,
        kernel_init=lambda key, shape, dtype: jax.random.uniform(
            key, shape, dtype, -limit, limit))
    self.bias = nnx.Param(jnp.zeros((), jnp.float32))

  def embed(self, batch):
    """Node embeddings `h_NxD` (the features DGI evaluates)."""
    return self.encoder(batch)


def corruption_perm(node_mask_N, key):
  """A uniform permutation of the real nodes (first in the batch); pads fixed.

  Node i draws u_i = uniform(fold_in(key, i)) and the real nodes are sorted
  by u, so the permutation of the real nodes does not depend on how much
  padding follows them.
  """
  n = node_mask_N.shape[0]
  u_N = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(
      jnp.arange(n))
  return jnp.argsort(jnp.where(node_mask_N, u_N, 2.0), stable=True)


def corrupt(batch, key):
  """DGI's corruption: the same graph with node feature rows permuted.

  x~_i = x_{perm(i)}, `perm` a uniform permutation of the real nodes (which
  must come first, as in `mi_jax.data.graphs` batches); padded nodes stay in
  place. Dense `x` rows are gathered; for `SparseFeatures` each entry's row
  r moves to perm^-1(r). Edges and masks are untouched.
  """
  perm_N = corruption_perm(batch["node_mask"], key)
  x = batch["x"]
  if isinstance(x, SparseFeatures):
    inv_N = jnp.argsort(perm_N)
    x = x._replace(row_K=inv_N[x.row_K].astype(x.row_K.dtype))
  else:
    x = x[perm_N]
  return {**batch, "x": x}


def dgi_scores(model: DGIModel, batch, key):
  """(scores_2Nx1, pos_2Nx1, valid_2Nx1): real rows then corrupted rows.

  The corrupted graph is `corrupt(batch, key)`; its first GCN product is
  taken as the permuted rows of the real graph's X W (the same numbers, one
  sparse product instead of two).
  """
  xw_NxD = model.encoder.layers[0].linear(batch["x"], batch)
  perm_N = corruption_perm(batch["node_mask"], key)
  h_NxD = model.encoder(batch, xw_NxD)
  hc_NxD = model.encoder(batch, xw_NxD[perm_N])
  s_D = jax.nn.sigmoid(mean_readout(h_NxD, batch["node_mask"]))
  scores_2Nx1 = model.critic(jnp.concatenate([h_NxD, hc_NxD]),
                             s_D[None]) + model.bias[...]
  n = h_NxD.shape[0]
  pos_2Nx1 = (jnp.arange(2 * n) < n)[:, None]
  valid_2Nx1 = jnp.concatenate([batch["node_mask"], batch["node_mask"]])[:,
                                                                        None]
  return scores_2Nx1, pos_2Nx1, valid_2Nx1


def dgi_loss(model: DGIModel, batch, key):
  """`loss_fn(model, batch, key) -> (loss, metrics)`; loss = -I_JS / 2 (= BCE)."""
  scores, pos, valid = dgi_scores(model, batch, key)
  js = bounds.jsd(scores, pos, valid=valid)
  return -0.5 * js, {"mi": js, "jsd": js}


def _densifier(width: int):
  def dense(batch):
    x = batch["x"]
    if not isinstance(x, SparseFeatures):
      return x
    n = batch["node_mask"].shape[0]
    return jnp.zeros((n, width), x.value_K.dtype).at[x.row_K, x.col_K].add(
        x.value_K)
  return dense


def build(config, *, seed: int) -> Method:
  """The engine plug-in: DGI on one Planetoid graph (`config.dgi`).

  Each engine step is one full-graph step (`FixedBatchIterator`); the
  evaluation is transductive node classification (`"node_classification"`
  protocol: logistic regression on the frozen embeddings, C picked on the
  validation nodes, accuracy on the 1,000 test nodes) beside the raw
  (row-normalised) features and, with `config.nodes.random_baseline`, a
  randomly initialised encoder. The held-out "bound" is the loss on the same
  graph under another corruption (the task is transductive).
  """
  from mi_jax.data import graphs  # pylint: disable=g-import-not-at-top
  c = config.dgi
  data = graphs.load_planetoid(c.dataset,
                               datasets_dir=config.get("datasets_dir") or None)
  batch = graphs.planetoid_batch(data, normalize=c.row_normalize)
  in_dim = data["features"].shape[1]
  n = len(data["labels"])

  def init_model(s):
    return DGIModel(in_dim, c.hidden, rngs=nnx.Rngs(s))

  evaluation = Evaluation(
      inputs={"graph": batch}, labels={"graph": data["labels"]},
      features=lambda model, b: model.embed(b),
      protocol="node_classification", name="nodes",
      options={"train_idx": data["train_idx"], "val_idx": data["val_idx"],
               "test_idx": data["test_idx"]},
      raw_features=_densifier(in_dim), raw_name="raw",
      rows={"graph": np.arange(n)}, chunk_size=None)
  return Method(
      model=init_model(seed), loss_fn=dgi_loss,
      make_iterator=lambda shard, count: FixedBatchIterator(batch),
      heldout_batches=[batch], evaluations=[evaluation], bound_key="mi",
      title=f"DGI on {c.dataset} (GCN {c.hidden}, JSD)",
      format_results=format_results, init_model=init_model,
      data_parallel=False)


PAPER = {"cora": (82.3, 0.6, 47.9, 69.3), "citeseer": (71.8, 0.7, 49.3, 61.9)}


def format_results(results, config) -> str:
  """The closing table: DGI beside raw features, random init and the paper."""
  paper = PAPER.get(config.dgi.dataset)
  pct = lambda k: (f"{100 * results[k]:.1f}" if k in results  # noqa: E731
                   else "n/a")
  rows = [f"DGI {config.dgi.dataset}, seed {config.seed}, {config.steps} "
          "full-graph steps (test accuracy, %; C picked on validation)",
          f"  {'':22s} {'ours':>6s} {'paper':>6s}",
          f"  {'DGI embeddings':22s} {pct('nodes/test_acc'):>6s} "
          f"{paper[0] if paper else '':>6}",
          f"  {'raw features':22s} {pct('nodes/raw_test_acc'):>6s} "
          f"{paper[2] if paper else '':>6}",
          f"  {'random-init encoder':22s} {pct('nodes/random_test_acc'):>6s} "
          f"{paper[3] if paper else '':>6}"]
  if "eval/mi" in results:
    rows.append(f"  I_JS on a fresh corruption: {results['eval/mi']:.4f}")
  return "\n".join(rows)
