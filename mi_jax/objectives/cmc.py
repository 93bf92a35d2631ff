"""Contrastive Multiview Coding: any number of views, core-view or full-graph InfoNCE.

Each view v of a sample has its own encoder; z_v = normalize(g_v(x_v)) (unit
L2 norm) and a critic score is s(z_a, z_b) = z_a . z_b / tau. For an ordered
pair (anchor a, target b) the contrastive term is InfoNCE with the target
view's code of the same sample as the positive:

  in-batch negatives:  I(a -> b) = I_NCE(S), S_ij = z_a,i . z_b,j / tau over
                       the global batch (positives on the diagonal);
  memory bank:         row i = [z_a,i . p_b,i, z_a,i . m_b[n_1] ...
                       z_a,i . m_b[n_K]] / tau, positive in column 0, where
                       m_b is view b's bank, p_b,i = m_b[idx_i] ("bank", as in
                       the reference code) or z_b,i ("batch"), and the
                       K negatives n_k are drawn uniformly from the bank
                       *without the sample's own entry idx_i* (the reference
                       code can draw it).

The two-view loss is L(a, b) = -(I(a -> b) + I(b -> a)); over V views

  core view:   L = sum_{j = 2..V} L(1, j)
  full graph:  L = sum_{1 <= i < j <= V} L(i, j)

(Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020, eqs. 3-5;
the softmax / InfoNCE form of its loss). `metrics["mi"]` is the mean I over
the ordered pairs.

The memory bank (one `[N, D]` table per view, N = training-set size) is a
non-`nnx.Param` variable, so it rides in the train state's `rest`, is
checkpointed with it and replicated over the mesh like BatchNorm statistics.
After each training forward, the entries of the batch move towards the new
codes: m_v[idx_i] <- normalize(mu * m_v[idx_i] + (1 - mu) * z_v,i) (mu = 0.5
in the paper). In eval mode (`model.eval()`) the bank is read, not written.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
import numpy as np

from mi_jax import audio, bounds, views

GRAPHS = ("core", "full")


class MemoryBank(nnx.Variable):
  """Per-view memory of unit-norm codes `[V, N, D]` (not a Param: not trained)."""


def view_pairs(num_views: int, graph: str) -> tuple[tuple[int, int], ...]:
  """Unordered view pairs of the objective: core view 0 vs each other, or all."""
  if graph not in GRAPHS:
    raise ValueError(f"CMC graph must be one of {GRAPHS}, got {graph!r}.")
  if num_views < 2:
    raise ValueError(f"CMC needs at least 2 views, got {num_views}.")
  if graph == "core":
    return tuple((0, j) for j in range(1, num_views))
  return tuple((i, j) for i in range(num_views)
               for j in range(i + 1, num_views))


def _normalize(z_BxD):
  return z_BxD * jax.lax.rsqrt(
      jnp.maximum(jnp.sum(z_BxD * z_BxD, axis=-1, keepdims=True), 1e-12))


class CMCModel(nnx.Module):
  """One encoder per view, optionally a memory bank.

  Args:
    encoders: V modules with the same int `out_dim`.
    temperature: tau (paper: 0.07).
    bank_size: 0 for in-batch negatives; else N, the number of training
      samples (batches carry `index` in [0, N)).
    num_negatives: K negatives drawn from the bank per step (bank only).
    momentum: mu of the bank update (paper: 0.5).
    positive: "bank" (m_b[idx_i], the reference code) or "batch" (z_b,i of
      this step). With "batch" the positive is always a fresh code and the
      negatives stale bank entries, which a network can tell apart without
      learning anything about the data (measured in docs/cpc_cmc.md).
  """

  def __init__(self, encoders: Sequence[nnx.Module], *,
               temperature: float = 0.07, bank_size: int = 0,
               num_negatives: int = 4096, momentum: float = 0.5,
               positive: str = "bank", rngs: nnx.Rngs):
    dims = {int(e.out_dim) for e in encoders}
    if len(dims) != 1:
      raise ValueError(f"CMC encoders must share out_dim, got {sorted(dims)}.")
    if not temperature > 0:
      raise ValueError(f"temperature must be > 0, got {temperature}.")
    if positive not in ("batch", "bank"):
      raise ValueError(f"positive must be 'batch' or 'bank', got {positive!r}.")
    if bank_size and not 0 < num_negatives < bank_size:
      raise ValueError(f"num_negatives={num_negatives} must be in [1, "
                       f"bank_size - 1 = {bank_size - 1}].")
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
    self.encoders = nnx.List(list(encoders))
    self.out_dim = dims.pop()
    self.temperature = float(temperature)
    self.num_negatives = int(num_negatives)
    self.momentum = float(momentum)
    self.positive = positive
    self.deterministic = False   # set by model.eval() / model.train()
    self.bank = nnx.data(None)
    if bank_size:
      init_VxNxD = jax.random.normal(
          rngs.params(), (len(encoders), bank_size, self.out_dim))
      self.bank = MemoryBank(_normalize(init_VxNxD))

  def embed(self, views_V: Sequence[jax.Array]) -> list[jax.Array]:
    """Unit-norm codes `z_BxD` of each view."""
    if len(views_V) != len(self.encoders):
      raise ValueError(f"got {len(views_V)} views for {len(self.encoders)} "
                       "encoders.")
    return [_normalize(enc(x).astype(jnp.float32))
            for enc, x in zip(self.encoders, views_V)]

  def features(self, views_V: Sequence[jax.Array]) -> jax.Array:
    """Probe features: the concatenated unit-norm codes `[B, V * D]`."""
    return jnp.concatenate(self.embed(views_V), axis=-1)


def negative_indices(r_K: jax.Array, index_B: jax.Array) -> jax.Array:
  """Bank rows serving as negatives of sample i: n_ik = r_k + [r_k >= idx_i].

  With r_k ~ U{0..N-2}, n_ik is uniform on {0..N-1} without idx_i: a
  sample's own entry is never among its negatives. Returns `[B, K]` int32.
  """
  return (r_K[None, :] + (r_K[None, :] >= index_B[:, None])).astype(jnp.int32)


def bank_scores(za_BxD: jax.Array, pos_BxD: jax.Array, bank_NxD: jax.Array,
                r_K: jax.Array, index_B: jax.Array, temperature: float):
  """Scores `[B, 1 + K]` against the positive (column 0) and K bank negatives.

  Equal to `za . bank[negative_indices(r_K, index_B)]` per row, computed as
  two `[B, K]` products (bank rows r_k and r_k + 1) and a select, instead of
  a `[B, K, D]` gather.
  """
  s0_BxK = za_BxD @ bank_NxD[r_K].T
  s1_BxK = za_BxD @ bank_NxD[r_K + 1].T
  neg_BxK = jnp.where(r_K[None, :] >= index_B[:, None], s1_BxK, s0_BxK)
  pos_Bx1 = jnp.sum(za_BxD * pos_BxD, axis=-1, keepdims=True)
  return jnp.concatenate([pos_Bx1, neg_BxK], axis=1) / temperature


def bank_update(bank_NxD: jax.Array, index_B: jax.Array, z_BxD: jax.Array,
                momentum: float) -> jax.Array:
  """m[idx_i] <- normalize(mu * m[idx_i] + (1 - mu) * z_i); other rows kept."""
  mixed_BxD = momentum * bank_NxD[index_B] + (1.0 - momentum) * z_BxD
  return bank_NxD.at[index_B].set(_normalize(mixed_BxD))


def _bank_infonce(scores_BxC):
  mask_BxC = jnp.zeros(scores_BxC.shape, bool).at[:, 0].set(True)
  return bounds.infonce(scores_BxC, mask_BxC)


def cmc_loss(model: CMCModel, batch: dict, key: jax.Array, *,
             views_fn: Callable, graph: str = "core"):
  """CMC loss over the view pairs of `graph` (module docstring).

  Args:
    model: a `CMCModel`.
    batch: a dict; `views_fn(batch, key) -> [x_1, ..., x_V]`; with a bank it
      also needs `index` (int [B], the samples' rows in the bank).
    key: PRNG key for the views and the bank negatives.
    views_fn: makes the V views.
    graph: "core" or "full".

  Returns:
    (loss, {"mi": mean I over ordered pairs, "mi/{a}-{b}": each I(a -> b)}).
  """
  key_views, key_neg = jax.random.split(key)
  z_V = model.embed(views_fn(batch, key_views))
  pairs = view_pairs(len(z_V), graph)
  use_bank = model.bank is not None
  if use_bank:
    bank_VxNxD = model.bank[...]
    index_B = batch["index"].astype(jnp.int32)
    r_VxK = jax.random.randint(key_neg, (len(z_V), model.num_negatives), 0,
                               bank_VxNxD.shape[1] - 1)
  terms = {}
  for a, b in pairs:
    for anchor, target in ((a, b), (b, a)):
      if use_bank:
        pos = (z_V[target] if model.positive == "batch"
               else bank_VxNxD[target][index_B])
        scores = bank_scores(z_V[anchor], pos, bank_VxNxD[target],
                             r_VxK[target], index_B, model.temperature)
        terms[f"mi/{anchor}-{target}"] = _bank_infonce(scores)
      else:
        scores_BxB = (z_V[anchor] @ z_V[target].T) / model.temperature
        terms[f"mi/{anchor}-{target}"] = bounds.infonce(scores_BxB)
  if use_bank and not model.deterministic:
    model.bank[...] = jnp.stack([
        bank_update(bank_VxNxD[v], index_B, jax.lax.stop_gradient(z),
                    model.momentum) for v, z in enumerate(z_V)])
  total = sum(terms.values())
  metrics = dict(terms)
  metrics["mi"] = total / len(terms)
  return -total, metrics


def make_cmc_loss(*, views_fn: Callable, graph: str = "core"):
  """`loss_fn(model, batch, key)`: `cmc_loss` with its options bound."""
  view_pairs(2, graph)   # fail early on a bad graph name
  return functools.partial(cmc_loss, views_fn=views_fn, graph=graph)


def image_quadrant_views(batch: dict, key: jax.Array) -> list[jax.Array]:
  """Four views of an image batch: its quadrants (`mi_jax.views.quadrants`)."""
  del key
  return list(views.quadrants(batch["image"]))


def image_lab_views(batch: dict, key: jax.Array) -> list[jax.Array]:
  """CMC's colour views: L and ab of an RGB batch (`mi_jax.views.lab_split`)."""
  del key
  return list(views.lab_split(batch["image"]))


def audio_wave_mel_views(crop: int, **log_mel_kwargs) -> Callable:
  """`fn(batch, key)`: a random `crop` of each recording and its log-mel."""
  def fn(batch, key):
    wave_BxL = audio.random_crops_1d(batch["audio"], batch["length"], key,
                                     crop)
    return list(audio.waveform_and_log_mel(wave_BxL, **log_mel_kwargs))
  return fn


# --------------------------------------------------------------------------
# Plug-in for the training engine: `build(config, *, seed) -> Method`.

VIEWS = ("quadrants", "lab", "wave_logmel")


def _views_fn(config) -> Callable:
  name = config.cmc.views
  if name == "quadrants":
    return image_quadrant_views
  if name == "lab":
    return image_lab_views
  if name == "wave_logmel":
    return audio_wave_mel_views(int(config.cmc.crop))
  raise ValueError(f"unknown config.cmc.views {name!r}; known: {VIEWS}")


def make_model(config, example_views, *, seed: int,
               bank_size: int = 0) -> CMCModel:
  """The `CMCModel` of a config: one encoder per view (`config.cmc.encoders`).

  `config.cmc.encoders` is one `{name, kwargs}` node per view, or a single
  node used for every view; `in_channels` is filled from each view's shape.
  """
  from mi_jax import encoders  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import config_kwargs  # pylint: disable=g-import-not-at-top
  c = config.cmc
  rngs = nnx.Rngs(seed)
  specs = c.encoders if isinstance(c.encoders, (list, tuple)) else (
      [c.encoders] * len(example_views))
  if len(specs) != len(example_views):
    raise ValueError(f"config.cmc.encoders has {len(specs)} entries for "
                     f"{len(example_views)} views ({c.views}).")
  encs = []
  for spec, view in zip(specs, example_views):
    kwargs = config_kwargs(spec.get("kwargs"))
    kwargs.setdefault("in_channels", 1 if view.ndim == 2 else
                      int(view.shape[-1]))
    encs.append(encoders.make(spec["name"], rngs=rngs, **kwargs))
  return CMCModel(encs, temperature=float(c.temperature),
                  bank_size=bank_size,
                  num_negatives=int(c.get("num_negatives", 4096)),
                  momentum=float(c.get("momentum", 0.5)),
                  positive=c.get("positive", "bank"), rngs=rngs)


def build(config, *, seed: int):
  """CMC as an engine method: image quadrants / L-ab, or FSDD waveform vs log-mel.

  Config: `dataset`, `cmc.views` ("quadrants", "lab", "wave_logmel"),
  `cmc.encoders`, `cmc.graph` ("core" / "full"), `cmc.temperature`,
  `cmc.memory_bank` (True: a bank with one entry per training sample and
  `cmc.num_negatives` negatives per step, `cmc.momentum`, `cmc.positive`;
  False: in-batch negatives over the global batch), `cmc.crop` (speech).
  Evaluation: linear probes on the concatenated unit-norm codes of all views
  (whole recordings for speech), beside the raw input (pixels / pooled
  log-mel) and a randomly initialised model.
  """
  from mi_jax.objectives import _audio, _images  # pylint: disable=g-import-not-at-top
  from mi_jax.objectives._method import Method  # pylint: disable=g-import-not-at-top
  c = config.cmc
  views_fn = _views_fn(config)
  loss_fn = make_cmc_loss(views_fn=views_fn, graph=c.graph)
  speech = c.views == "wave_logmel"
  if speech:
    train, test = _audio.fsdd_splits(config)
    train_data = dict(train)
  else:
    train_data, probe_train, probe_test = _images.image_splits(config)
    if not isinstance(train_data, dict):
      raise ValueError("CMC needs the training images in memory (the memory "
                       "bank is indexed by row); set config.streaming=False.")
    train_data = dict(train_data)
    test = dict(probe_test)
  n = len(next(iter(train_data.values())))
  train_data["index"] = np.arange(n, dtype=np.int32)
  test = dict(test, index=np.arange(len(next(iter(test.values()))),
                                    dtype=np.int32))
  example = {k: v[:2] for k, v in train_data.items()}
  example_views = views_fn(jax.tree.map(jnp.asarray, example),
                           jax.random.key(0))
  bank_size = n if c.get("memory_bank", False) else 0

  def init_model(seed):
    return make_model(config, example_views, seed=seed, bank_size=bank_size)

  title = (f"CMC {config.dataset} {c.views} ({c.graph}, "
           f"{'memory bank' if bank_size else 'in-batch'} negatives)")
  if speech:
    def features(model, x):
      wave_BxL = x["audio"]
      mel_BxTxM = audio.log_mel(wave_BxL)
      frames_B = (x["length"] - 256) // 80 + 1
      z_wave = _normalize(model.encoders[0](wave_BxL, x["length"]))
      z_mel = _normalize(model.encoders[1](mel_BxTxM, frames_B))
      return jnp.concatenate([z_wave, z_mel], axis=-1)

    def format_results(results, config):
      del config
      return _audio.format_fsdd_results(results)

    evaluations = _audio.fsdd_evaluations(features, train, test)
  else:
    def format_results(results, config):
      del config
      return (
          "linear probe (label), concatenated view codes: "
          f"{100 * results.get('probe/linear_acc', float('nan')):.1f}%   raw "
          f"pixels {100 * results.get('probe/pixel_linear_acc', float('nan')):.1f}"
          f"%   random encoders "
          f"{100 * results.get('probe/random_linear_acc', float('nan')):.1f}%")

    evaluations = [_images.probe_evaluation(
        lambda model, x: model.features(views_fn({"image": x}, None)),
        probe_train, probe_test,
        raw_features=lambda x: x.reshape(x.shape[0], -1), raw_name="pixel")]
  return Method(
      model=init_model(seed), loss_fn=loss_fn, train_data=train_data,
      heldout_batches=_images.split_batches(
          _audio.heldout_subset(test, config), config.batch_size),
      evaluations=evaluations, bound_key="mi", title=title,
      format_results=format_results, init_model=init_model)
