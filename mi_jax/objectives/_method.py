"""The plug-in contract between a method and the training engine.

A *method* is one module (under `mi_jax/objectives/` or anywhere importable,
or a `.py` file) with a function

  build(config, *, seed: int) -> Method

that turns a config into everything method-specific: the model, its loss, the
training batches, the held-out batches and the evaluations. The engine
(`mi_jax.training`) calls only this; it imports the module named by
`config.method` (see `mi_jax.training.run.load_method`), so `mi-jax train`,
resume and `mi-jax eval --workdir` work for any method from `config.json`
alone. See docs/architecture.md for a complete example.
"""

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import ml_collections
from flax import nnx

Batch = Any  # A pytree of arrays.
# features(model, inputs) -> feats_NxD or {name: feats_NxD}.
FeaturesFn = Callable[[nnx.Module, Any], Any]
# loss_fn(model, batch, key) -> (loss, metrics); metrics hold the bound.
LossFn = Callable[[nnx.Module, Batch, Any], tuple[Any, dict]]


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One evaluation of the learned representation: features + a protocol.

  The engine computes `features(model, inputs)` (model in eval mode, under
  jit, outputs cast to float32) for the inputs of every split, then calls the
  protocol `mi_jax.evaluation.protocols.get(protocol)` with the features and
  labels of all splits. A features function returning a dict of named
  feature sets (e.g. DIM's conv / fc / y) gets one protocol call per set;
  its metrics are reported as `NAME/METRIC/SET` (and `NAME/METRIC` for the
  `primary` set).

  Attributes:
    inputs: `{split: inputs}`; each inputs is a pytree of arrays with a
      leading axis N, run through `features` in chunks of `chunk_size` rows
      (None: one call on the whole pytree, e.g. one whole graph).
    labels: `{split: labels_N}` (NumPy), what the protocol predicts.
    protocol: a protocol name registered in `mi_jax.evaluation.protocols`
      (`"probe"`: linear probe, kNN and optional MLP probe; train / test) or
      a callable with the same signature.
    features: `features(model, inputs_chunk) -> feats_CxD | {set: feats_CxD}`.
    name: prefix of the metrics (`probe/linear_acc`) and the config node
      whose fields are the protocol's options at evaluation time
      (`config.probe.C`, ...), laid over `options`.
    options: default protocol options.
    raw_features: `raw_features(inputs_chunk) -> feats_CxD`, the raw-input
      baseline (reported as `NAME/{raw_name}_METRIC`), or None.
    raw_name: prefix of the raw baseline's metrics (e.g. "pixel").
    primary: with named feature sets, the one also reported unsuffixed.
    rows: `{split: index_array}` applied to the concatenated features of a
      split before the protocol (e.g. the real graphs among padded slots).
    chunk_size: rows per feature call, None for one call.
  """
  inputs: Mapping[str, Any]
  labels: Mapping[str, Any]
  features: FeaturesFn
  protocol: Any = "probe"
  name: str = "probe"
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  raw_features: Optional[Callable[[Any], Any]] = None
  raw_name: str = "raw"
  primary: Optional[str] = None
  rows: Optional[Mapping[str, Any]] = None
  chunk_size: Optional[int] = 1000


@dataclasses.dataclass(frozen=True)
class Method:
  """Everything method-specific of a run, as `build(config, *, seed)` returns it.

  Attributes:
    model: one `nnx.Module` holding every trainable piece.
    loss_fn: `loss_fn(model, batch, key) -> (loss, metrics)`, minimised;
      `metrics[bound_key]` is the MI bound (nats).
    train_data: the training examples: a dict of arrays with a common leading
      axis N (or a random-access source), read by the engine through a
      `mi_jax.data.BatchIterator` of `config.batch_size` (deterministic,
      host-sharded, checkpointable). Ignored when `make_iterator` is given.
    make_iterator: `make_iterator(shard_index, shard_count) -> iterator` for
      batches of another kind (padded graph batches, one whole graph: see
      `FixedBatchIterator`). The iterator yields this host's part of each
      global batch and has `get_state() -> dict` (JSON) / `set_state(dict)`.
    heldout_batches: fixed batches for the held-out bound (eval mode, key
      `fold_in(key(seed + 1), i)` for batch i); may be empty.
    evaluations: what the final evaluation (and every `probe_every` steps, the
      quick part) runs; see `Evaluation`.
    bound_key: the name of the bound in `loss_fn`'s metrics.
    title: one line naming the run (curves' title).
    format_results: `format_results(results, config) -> str`, the closing
      table of `mi-jax train` / `mi-jax eval`; None prints every result.
    init_model: `init_model(seed) -> model`, a randomly initialised model for
      the random-init baseline (`config.<evaluation>.random_baseline`).
    data_parallel: False when a batch cannot be split along its leading axis
      over devices (e.g. one whole graph): the engine then runs on one device.
  """
  model: nnx.Module
  loss_fn: LossFn
  train_data: Any = None
  make_iterator: Optional[Callable[[int, int], Iterator]] = None
  heldout_batches: Sequence[Batch] = ()
  evaluations: Sequence[Evaluation] = ()
  bound_key: str = "mi"
  title: str = ""
  format_results: Optional[Callable[[dict, Any], str]] = None
  init_model: Optional[Callable[[int], nnx.Module]] = None
  data_parallel: bool = True


class FixedBatchIterator:
  """Yields the same batch forever (one whole graph, transductive tasks).

  Its state counts the batches served, so a resumed run continues the count.
  """

  def __init__(self, batch: Batch):
    self._batch = batch
    self._count = 0

  def get_state(self) -> dict:
    return {"count": self._count}

  def set_state(self, state: Mapping[str, Any]) -> None:
    self._count = int(state["count"])

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    self._count += 1
    return self._batch


def config_kwargs(node) -> dict:
  """A config node of keyword arguments -> a dict (lists become tuples)."""
  if node is None:
    return {}
  if isinstance(node, ml_collections.ConfigDict):
    node = node.to_dict()
  return {k: tuple(v) if isinstance(v, list) else v for k, v in node.items()}
