"""Memory-linear InfoNCE, DV and NWJ from two embedding matrices.

The score matrix s_ij = za_i . (W zb_j) (plain inner product when W is None)
is never materialised: row blocks of `block_size` rows are computed, reduced
to their row logsumexp and dropped, in the forward pass and again in the
custom backward pass. Peak memory is O(K x block_size + K x D) instead of
O(K^2); value and gradient equal the dense `mi_jax.bounds` functions on
`za @ W @ zb.T` with the default diagonal mask (positive pairs (za_i, zb_i)).

Under a device mesh (a jitted step traced inside `jax.set_mesh(mesh)`, as
`mi_jax.training.sharding.shard_train_step` does) whose axes `axis_name`
(default: all of them) hold n > 1 devices and K % n == 0, the row blocks are
computed with `jax.shard_map`: each device all-gathers zb (K x D, the
negatives of the whole global batch) and reduces only its own K/n rows of za,
so the per-device memory is O(K/n x D + K x D + block_size x K) and no device
repeats another's work; the backward pass reduce-scatters zb's gradient (the
transpose of the all-gather). Values and gradients equal the single-device
ones.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mi_jax.bounds import _common

__all__ = ["NAMES", "get", "resolve", "infonce", "dv", "nwj",
           "row_logsumexp"]


def _blocks(x_KxD, block_size):
  """Zero-pads rows to a multiple of block_size; returns [N, block, D]."""
  k, d = x_KxD.shape
  n = -(-k // block_size)
  x = jnp.pad(x_KxD, ((0, n * block_size - k), (0, 0)))
  return x.reshape(n, block_size, d)


def _block_scores(za_bxD, zb_KxD, start, exclude_diagonal, precision):
  """Scores of one row block [b, K] (diagonal -> -inf when excluded).

  `start` is the global index of the block's first row (its column of zb).
  """
  s_bxK = jnp.matmul(za_bxD, zb_KxD.T, precision=precision)
  if exclude_diagonal:
    rows = start + jnp.arange(s_bxK.shape[0])
    diag = rows[:, None] == jnp.arange(s_bxK.shape[1])[None, :]
    s_bxK = jnp.where(diag, -jnp.inf, s_bxK)
  return s_bxK


def _lse_rows(s_bxK):
  m = jax.lax.stop_gradient(jnp.max(s_bxK, axis=1, keepdims=True))
  return jnp.log(jnp.sum(jnp.exp(s_bxK - m), axis=1)) + m[:, 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _row_lse(za_kxD, zb_KxD, row0, exclude_diagonal, block_size, precision):
  """lse of the rows of za_kxD against all of zb_KxD; row r is global row0 + r."""
  return _row_lse_fwd(za_kxD, zb_KxD, row0, exclude_diagonal, block_size,
                      precision)[0]


def _row_lse_fwd(za_KxD, zb_KxD, row0, exclude_diagonal, block_size,
                 precision):
  k = za_KxD.shape[0]

  def one_block(_, args):
    idx, za_bxD = args
    s_bxK = _block_scores(za_bxD, zb_KxD, row0 + idx * block_size,
                          exclude_diagonal, precision)
    return None, _lse_rows(s_bxK)

  za_blocks = _blocks(za_KxD, block_size)
  _, lse_NxB = jax.lax.scan(
      one_block, None, (jnp.arange(za_blocks.shape[0]), za_blocks))
  lse_K = lse_NxB.reshape(-1)[:k]
  return lse_K, (za_KxD, zb_KxD, row0, lse_K)


def _row_lse_bwd(exclude_diagonal, block_size, precision, res, g_K):
  za_KxD, zb_KxD, row0, lse_K = res
  k = za_KxD.shape[0]
  za_blocks = _blocks(za_KxD, block_size)
  n = za_blocks.shape[0]
  pad = n * block_size - k
  lse_blocks = jnp.pad(lse_K, (0, pad)).reshape(n, block_size)
  g_blocks = jnp.pad(g_K, (0, pad)).reshape(n, block_size)

  def one_block(dzb_KxD, args):
    idx, za_bxD, lse_b, g_b = args
    s_bxK = _block_scores(za_bxD, zb_KxD, row0 + idx * block_size,
                          exclude_diagonal, precision)
    # d lse_i / d s_ij = softmax_ij; padded rows carry g = 0.
    w_bxK = jnp.exp(s_bxK - lse_b[:, None]) * g_b[:, None]
    dza_bxD = jnp.matmul(w_bxK, zb_KxD, precision=precision)
    dzb_KxD = dzb_KxD + jnp.matmul(w_bxK.T, za_bxD, precision=precision)
    return dzb_KxD, dza_bxD

  dzb_KxD, dza_NxBxD = jax.lax.scan(
      one_block, jnp.zeros_like(zb_KxD),
      (jnp.arange(n), za_blocks, lse_blocks, g_blocks))
  dza_KxD = dza_NxBxD.reshape(n * block_size, -1)[:k]
  return dza_KxD.astype(za_KxD.dtype), dzb_KxD.astype(zb_KxD.dtype), None


_row_lse.defvjp(_row_lse_fwd, _row_lse_bwd)


def mesh_axes(axis_name=None) -> tuple[str, ...]:
  """The axes of the tracing mesh (`jax.set_mesh`) the rows are split over.

  `axis_name` None: every axis of the mesh (how
  `mi_jax.training.sharding.shard_train_step` splits a batch); a name or a
  tuple of names: those of them the mesh has; `()`: none. No mesh: `()`.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return ()
  if axis_name is None:
    axes = tuple(mesh.axis_names)
  else:
    axes = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
  return tuple(a for a in axes if a in mesh.axis_names and mesh.shape[a] > 1)


def _row_lse_any(za_KxD, zb_KxD, exclude_diagonal, block_size, precision,
                 axis_name):
  """`_row_lse` of all K rows; row-sharded over the mesh axes when there are any."""
  k = za_KxD.shape[0]
  axes = mesh_axes(axis_name)
  mesh = jax.sharding.get_abstract_mesh()
  n = math.prod(mesh.shape[a] for a in axes) if axes else 1
  if n == 1 or k % n or zb_KxD.shape[0] % n:
    return _row_lse(za_KxD, zb_KxD, 0, exclude_diagonal, min(block_size, k),
                    precision)

  def local(za_kxD, zb_kxD):
    # Every device: its K/n rows against the whole global batch of negatives.
    zb_all_KxD = jax.lax.all_gather(zb_kxD, axes, tiled=True)
    row0 = jax.lax.axis_index(axes) * za_kxD.shape[0]
    return _row_lse(za_kxD, zb_all_KxD, row0, exclude_diagonal,
                    min(block_size, za_kxD.shape[0]), precision)

  spec = P(axes)
  return jax.shard_map(local, in_specs=(spec, spec), out_specs=spec)(
      za_KxD, zb_KxD)


def _prepare(za_KxD, zb_KxD, weight, block_size, rows_per_positive=1):
  za, zb = jnp.asarray(za_KxD), jnp.asarray(zb_KxD)
  for name, z in (("za", za), ("zb", zb)):
    if z.ndim != 2:
      raise ValueError(f"{name} must be 2-D [K, D], got shape {z.shape}.")
    if not jnp.issubdtype(z.dtype, jnp.floating):
      raise ValueError(f"{name} must be floating, got {z.dtype}.")
  m = rows_per_positive
  if not isinstance(m, int) or m < 1:
    raise ValueError(f"rows_per_positive must be a positive int, got {m!r}.")
  if za.shape[0] != m * zb.shape[0]:
    need = ("the same number of rows" if m == 1 else
            f"rows_per_positive ({m}) rows of za per row of zb")
    raise ValueError(f"za and zb need {need} (paired samples), got "
                     f"{za.shape[0]} and {zb.shape[0]} rows.")
  if zb.shape[0] < 2:
    raise ValueError("need at least 2 paired samples.")
  if not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
  za, zb = za.astype(jnp.float32), zb.astype(jnp.float32)
  if weight is None:
    if za.shape[1] != zb.shape[1]:
      raise ValueError(f"inner-product scores need equal widths, got "
                       f"{za.shape[1]} and {zb.shape[1]}; pass weight=[Da, Db].")
  else:
    w = jnp.asarray(weight, jnp.float32)
    if w.shape != (za.shape[1], zb.shape[1]):
      raise ValueError(f"weight must have shape {(za.shape[1], zb.shape[1])}, "
                       f"got {w.shape}.")
    zb = zb @ w.T                       # s_ij = za_i . (W zb_j)
  return za, zb, block_size


def row_logsumexp(za_KxD, zb_KxD, *, weight=None, exclude_diagonal=False,
                  block_size=512, precision=None, axis_name=None):
  """lse_i = log sum_j exp(za_i . W zb_j) (j != i if exclude_diagonal), [K].

  Computed in row blocks, forward and backward, in O(K x block_size) memory;
  row-sharded over the mesh axes `axis_name` (see `infonce` and the module
  docstring).
  """
  za, zb, bs = _prepare(za_KxD, zb_KxD, weight, block_size)
  return _row_lse_any(za, zb, bool(exclude_diagonal), bs, precision,
                      axis_name)


def _diag(za, zb):
  if za.shape[0] != zb.shape[0]:  # row i of za pairs with row i // M of zb
    zb = jnp.repeat(zb, za.shape[0] // zb.shape[0], axis=0)
  return jnp.sum(za * zb, axis=1)


def infonce(za_KxD, zb_KxD, *, weight=None, block_size=512, precision=None,
            axis_name=None, rows_per_positive=1):
  """InfoNCE (van den Oord et al. 2018) over all K x K pairs, memory-linear.

    I_NCE = mean_i [s_ii - logsumexp_j s_ij] + log K,   s_ij = za_i . W zb_j

  Equals `mi_jax.bounds.infonce(za @ W @ zb.T)`. With `rows_per_positive`
  M > 1, za has K*M rows and row i's positive is zb row i // M (e.g. DIM's
  local term contrasted over codes: rows (image b, location m), columns the
  codes): I = mean_i [s_{i, i//M} - logsumexp_j s_ij] + log K, which equals
  `mi_jax.bounds.infonce(scores, mask)` with that one-positive-per-row mask.

  Args:
    za_KxD, zb_KxD: paired embeddings (row i of each is a positive pair).
    weight: optional [Da, Db] bilinear matrix W (None: inner product).
    block_size: rows per block (static).
    precision: matmul precision (e.g. jax.lax.Precision.HIGHEST on TPU).
    axis_name: mesh axes the rows are split over when the step is traced
      under a mesh (each device reduces its rows against the global batch):
      None = every axis of the mesh (as `shard_train_step` splits the
      batch), a name or tuple of names, or () for none.
    rows_per_positive: M (static): za has M rows per row of zb.

  Returns:
    float32 scalar, nats.
  """
  za, zb, bs = _prepare(za_KxD, zb_KxD, weight, block_size, rows_per_positive)
  lse_K = _row_lse_any(za, zb, False, bs, precision, axis_name)
  return jnp.mean(_diag(za, zb) - lse_K) + math.log(zb.shape[0])


def _offdiag_logmeanexp(za, zb, bs, precision, axis_name):
  k = za.shape[0]
  lse_K = _row_lse_any(za, zb, True, bs, precision, axis_name)
  return jax.nn.logsumexp(lse_K) - math.log(k * (k - 1))


def dv(za_KxD, zb_KxD, *, weight=None, block_size=512, precision=None,
       axis_name=None):
  """Donsker-Varadhan bound (Belghazi et al. 2018) over K x K pairs.

    I_DV = mean_i s_ii - log mean_{i != j} exp(s_ij)

  Equals `mi_jax.bounds.dv(za @ W @ zb.T)`. Arguments as in `infonce`.
  """
  za, zb, bs = _prepare(za_KxD, zb_KxD, weight, block_size)
  return jnp.mean(_diag(za, zb)) - _offdiag_logmeanexp(za, zb, bs, precision,
                                                       axis_name)


def nwj(za_KxD, zb_KxD, *, weight=None, block_size=512, precision=None,
        axis_name=None):
  """NWJ bound (Nguyen et al. 2010; Poole et al. 2019) over K x K pairs.

    I_NWJ = mean_i s_ii - e^{-1} mean_{i != j} exp(s_ij)

  Equals `mi_jax.bounds.nwj(za @ W @ zb.T)`. Arguments as in `infonce`.
  """
  za, zb, bs = _prepare(za_KxD, zb_KxD, weight, block_size)
  lme = _offdiag_logmeanexp(za, zb, bs, precision, axis_name)
  return jnp.mean(_diag(za, zb)) - _common.capped_exp(lme - 1.0)


_BOUNDS = {"infonce": infonce, "dv": dv, "nwj": nwj}
NAMES = tuple(_BOUNDS)


def get(name):
  """The blocked bound `fn(za_KxD, zb_KxD, **options)` called `name` (one of `NAMES`)."""
  return _common.lookup(
      _BOUNDS, name, f"No memory-linear (blocked) version of bound {name!r}: "
      f"blocked bounds are {', '.join(NAMES)}. Use one of these, or the "
      "dense bound (no block size).")


def resolve(bound, block_size):
  """The blocked bound an objective's config asks for: the one place configs choose it.

  `bound` must be a name in `NAMES` (a config's `bound.name`), `block_size`
  a positive int (`bound.block_size`); both are checked here (ValueError
  saying what to change). Returns `get(bound)`, to be called as
  `fn(za, zb, block_size=block_size, **options)`.
  """
  if not isinstance(bound, str):
    raise ValueError("block_size needs the bound by name (one of "
                     f"{', '.join(NAMES)}), got {bound!r}.")
  if isinstance(block_size, bool) or int(block_size) != block_size or (
      block_size < 1):
    raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
  return get(bound)
