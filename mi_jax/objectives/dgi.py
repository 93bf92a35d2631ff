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
`fit_seeds` trains several seeds as one vmapped program with the reference's
early stopping on the training loss (patience 20; the embeddings come from
the parameters with the lowest loss).
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax import bounds
from mi_jax import critics
from mi_jax.encoders.gnn import GCN, SparseFeatures, mean_readout
from mi_jax.training.state import init_train_states, merge_model
from mi_jax.training.step import make_train_step, vmap_over_seeds


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


def fit_seeds(batch, in_dim: int, seeds: Sequence[int], *, hidden: int = 512,
              learning_rate: float = 1e-3, patience: int = 20,
              max_epochs: int = 2000, chunk: int = 25):
  """Trains DGI for every seed at once (vmapped) with early stopping.

  Per seed, as in the reference: each epoch is one full-graph step with a
  fresh corruption (key fold_in(key(seed), t)); the loss is recorded before
  the update, the parameters with the lowest loss so far are kept, and the
  seed stops once the loss has not improved for `patience` epochs (its state
  is frozen while the others go on). Steps run `chunk` at a time in a
  `lax.scan`.

  Returns:
    dict: `embeddings` f32 [S, N, D] from the best parameters, `init_embeddings`
    [S, N, D] from the initial (random) parameters, `best_loss` [S],
    `best_epoch` [S], `epochs` [S] (epochs run), `losses` [T, S].
  """
  tx = optax.adam(learning_rate)
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  graphdef, states = init_train_states(
      lambda k: DGIModel(in_dim, hidden, rngs=nnx.Rngs(k)), tx, keys_S)
  step = vmap_over_seeds(make_train_step(graphdef, tx, dgi_loss))
  # The batch is an argument, never a closed-over constant: XLA would try
  # to constant-fold the gathers over the whole graph.
  embed = jax.jit(jax.vmap(
      lambda p, r, b: merge_model(graphdef, p, r).embed(b),
      in_axes=(0, 0, None)))
  init_emb = embed(states.params, states.rest, batch)
  s = len(seeds)
  carry = (states, jax.tree.map(jnp.copy, states.params), jnp.full((s,), jnp.inf),
           jnp.zeros((s,), jnp.int32), jnp.zeros((s,), jnp.int32),
           jnp.zeros((s,), bool), jnp.zeros((s,), jnp.int32))

  @functools.partial(jax.jit, donate_argnums=0)
  def run_chunk(carry, batch, t0):
    def body(carry, t):
      states, best, best_loss, best_epoch, wait, stopped, epochs = carry
      step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_S)
      new_states, metrics = step(states, batch, step_keys)
      loss_S = metrics["loss"]
      active = ~stopped
      better = active & (loss_S < best_loss)
      pick = lambda m: lambda a, b: jnp.where(  # noqa: E731
          m.reshape(m.shape + (1,) * (a.ndim - 1)), a, b)
      best = jax.tree.map(pick(better), states.params, best)
      best_loss = jnp.where(better, loss_S, best_loss)
      best_epoch = jnp.where(better, t, best_epoch)
      wait = jnp.where(better, 0, jnp.where(active, wait + 1, wait))
      now_stopped = stopped | (wait >= patience) | (t + 1 >= max_epochs)
      go = active & ~(wait >= patience)
      states = jax.tree.map(pick(go), new_states, states)
      epochs = epochs + active
      return ((states, best, best_loss, best_epoch, wait, now_stopped,
               epochs), jnp.where(active, loss_S, jnp.nan))
    return jax.lax.scan(body, carry, t0 + jnp.arange(chunk))

  losses = []
  for t0 in range(0, max_epochs, chunk):
    carry, loss_TxS = run_chunk(carry, batch, t0)
    losses.append(np.asarray(loss_TxS))
    if bool(jnp.all(carry[5])):
      break
  states, best, best_loss, best_epoch, _, _, epochs = carry
  return {
      "embeddings": np.asarray(embed(best, states.rest, batch)),
      "init_embeddings": np.asarray(init_emb),
      "best_loss": np.asarray(best_loss), "best_epoch": np.asarray(best_epoch),
      "epochs": np.asarray(epochs), "losses": np.concatenate(losses),
  }
