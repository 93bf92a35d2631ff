"""Evaluation of a run's state: the held-out bound and the method's evaluations.

`heldout_bound(run, state)`: mean eval-step metrics over the method's fixed
held-out batches. `run_evaluations(run, state, full=...)`: for every
`mi_jax.objectives.Evaluation` of the method, features of every split in
chunks (`apply_in_chunks`), then its protocol (`mi_jax.evaluation.protocols`);
with `full` also the raw-input baseline and, when the evaluation's config
node sets `random_baseline`, the same evaluation of a randomly initialised
model (`random_state`). `final_evaluation` = both, full.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax.training.state import init_train_state, merge_model

RANDOM_SEED_OFFSET = 1000  # The random-init baseline's seed: config.seed + this.


def _same_on_all_hosts(mesh, batch):
  """A batch every host holds in full -> arrays split over the mesh's data axis."""
  if mesh is None:
    return batch
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  data = sharding.batch_sharding(mesh)
  return jax.tree.map(lambda v: jax.make_array_from_callback(
      np.shape(v), data, lambda index: np.asarray(v)[index]), batch)


def heldout_bound(run, state) -> dict:
  """Mean scalar eval metrics (the bound, `loss`) over the held-out batches.

  Batch i uses the key `fold_in(key(seed + 1), i)`. No held-out batches: {}.
  """
  batches = run.method.heldout_batches
  totals = {}
  key = jax.random.key(run.config.seed + 1)
  for i, batch in enumerate(batches):
    out = run.eval_step(state, _same_on_all_hosts(run.mesh, batch),
                        jax.random.fold_in(key, i))
    for k, v in out.items():
      if np.size(v) == 1:
        totals[k] = totals.get(k, 0.0) + float(v)
  return {k: v / len(batches) for k, v in totals.items()}


def apply_in_chunks(fn, inputs, chunk_size: int | None = 1000):
  """`fn(inputs[i:i + chunk_size])` over the leading axis of a pytree, concatenated.

  `fn` returns an array or a pytree of arrays (e.g. `{name: feats_CxD}`),
  each with the chunk's rows on axis 0; the results are NumPy arrays of N
  rows. `chunk_size=None` calls `fn(inputs)` once.
  """
  if chunk_size is None:
    return jax.tree.map(np.asarray, jax.device_get(fn(inputs)))
  n = len(jax.tree.leaves(inputs)[0])
  outs = [jax.device_get(fn(jax.tree.map(lambda x, i=i: x[i:i + chunk_size],
                                         inputs)))
          for i in range(0, n, chunk_size)]
  return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]),
                      *outs)


@functools.lru_cache(maxsize=32)
def _jitted_features(graphdef, features, train_mode: bool):
  """jit of `features(model, inputs)` on a (params, rest) pair, float32 outputs."""

  def apply(params, rest, inputs):
    model = merge_model(graphdef, params, rest)
    if train_mode:
      model.train()
      features(model, inputs)
      return nnx.split(model, nnx.Param, ...)[2]
    model.eval()
    return jax.tree.map(lambda f: f.astype(jnp.float32), features(model, inputs))

  return jax.jit(apply)


def _as_sets(feats):
  return feats if isinstance(feats, dict) else {None: feats}


def _protocol_results(evaluation, feats_by_split, options, seed, full):
  """Runs the protocol per feature set; keys METRIC or METRIC/SET (+ primary)."""
  from mi_jax.evaluation import protocols  # pylint: disable=g-import-not-at-top
  protocol = protocols.get(evaluation.protocol)
  labels = evaluation.labels
  sets = {split: _as_sets(f) for split, f in feats_by_split.items()}
  names = next(iter(sets.values())).keys()
  out = {}
  for name in names:
    feats = {}
    for split, named in sets.items():
      f = named[name]
      if evaluation.rows is not None and split in evaluation.rows:
        f = f[evaluation.rows[split]]
      feats[split] = f
    metrics = protocol(feats, labels, options=options, seed=seed, full=full)
    for metric, value in metrics.items():
      out[metric if name is None else f"{metric}/{name}"] = value
      if name is not None and name == evaluation.primary:
        out[metric] = value
  return out


def _options(run, evaluation) -> dict:
  node = run.config.get(evaluation.name)
  extra = node.to_dict() if hasattr(node, "to_dict") else dict(node or {})
  return {**evaluation.options, **extra}


def random_state(run, seed: int, *, batches: int = 20):
  """The state of a randomly initialised model (`method.init_model(seed)`).

  BatchNorm statistics (any non-parameter state) are estimated with
  `batches` train-mode passes of the first evaluation's features function
  over random rows of its first split (no gradient step): the fair random
  baseline, untrained but normalised to the data as a trained model is.
  """
  if run.method.init_model is None:
    raise ValueError("the method's build() gives no init_model, which the "
                     "random-init baseline (random_baseline=True) needs")
  _, state = init_train_state(run.method.init_model(seed), optax.identity())
  evaluation = run.method.evaluations[0]
  update = _jitted_features(run.graphdef, evaluation.features, True)
  inputs = next(iter(evaluation.inputs.values()))
  rest = state.rest
  n = len(jax.tree.leaves(inputs)[0])
  rng = np.random.default_rng(seed)
  bs = min(run.config.batch_size * 4, n)
  for _ in range(batches):
    if evaluation.chunk_size is None:
      chunk = inputs
    else:
      idx = rng.choice(n, bs, replace=False)
      chunk = jax.tree.map(lambda x, idx=idx: jnp.asarray(x[idx]), inputs)
    rest = update(state.params, rest, chunk)
  return state.replace(rest=rest)


@functools.lru_cache(maxsize=32)
def _jitted_raw(raw_features):
  return jax.jit(lambda x: jax.tree.map(
      lambda f: f.reshape(f.shape[0], -1).astype(jnp.float32), raw_features(x)))


def evaluate(run, evaluation, state, *, full: bool,
             baselines: bool = False) -> dict:
  """One evaluation of `state`: `{METRIC[/SET]: value}`.

  `full=False` (periodic, during training) runs the protocol's quick part;
  with `baselines` also the raw-input baseline as `{raw_name}_METRIC`
  (quick part).
  """
  options = _options(run, evaluation)
  feature_fn = functools.partial(
      _jitted_features(run.graphdef, evaluation.features, False),
      state.params, state.rest)
  feats = {split: apply_in_chunks(feature_fn, inputs, evaluation.chunk_size)
           for split, inputs in evaluation.inputs.items()}
  results = _protocol_results(evaluation, feats, options, run.config.seed, full)
  if baselines and evaluation.raw_features is not None:
    raw_fn = _jitted_raw(evaluation.raw_features)
    raw = {split: apply_in_chunks(raw_fn, inputs, evaluation.chunk_size)
           for split, inputs in evaluation.inputs.items()}
    results.update({f"{evaluation.raw_name}_{k}": v for k, v in
                    _protocol_results(evaluation, raw, options,
                                      run.config.seed, False).items()})
  return results


def run_evaluations(run, state, *, full: bool) -> dict:
  """Every evaluation of the method, `{"NAME/METRIC[/SET]": value}` (no baselines)."""
  return {f"{e.name}/{k}": v for e in run.method.evaluations
          for k, v in evaluate(run, e, state, full=full).items()}


def final_evaluation(run, state) -> dict:
  """Held-out bound (also as `eval/bound`), every evaluation (full) with its baselines.

  The random-init baseline runs for an evaluation whose config node has
  `random_baseline=True` (seed `config.seed + 1000`), as `NAME/random_*`.
  """
  results = {f"eval/{k}": v for k, v in heldout_bound(run, state).items()}
  results["eval/bound"] = results.get(f"eval/{run.method.bound_key}",
                                      float("nan"))
  random = None
  for e in run.method.evaluations:
    results.update({f"{e.name}/{k}": v for k, v in
                    evaluate(run, e, state, full=True, baselines=True).items()})
    if _options(run, e).get("random_baseline", False):
      if random is None:
        random = random_state(run, run.config.seed + RANDOM_SEED_OFFSET)
      results.update({f"{e.name}/random_{k}": v for k, v in
                      evaluate(run, e, random, full=True).items()})
  return results


def format_results(run, results: dict) -> str:
  """The closing table: the method's `format_results`, else one line per result."""
  if run.method.format_results is not None:
    return run.method.format_results(results, run.config)
  return "\n".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                   for k, v in sorted(results.items()))
