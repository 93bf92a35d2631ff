"""The pure train / eval steps, their vmap over seeds and their lax.scan over steps.

`make_train_step(graphdef, tx, loss_fn)` returns `step(state, batch, key) ->
(state, metrics)`, a pure unjitted function: callers `jax.jit` it on one
device, `jax.vmap` it over seeds (`vmap_over_seeds`), or jit it with shardings
over a mesh (`mi_jax.training.sharding.shard_train_step`). Python and NNX only
run while tracing; the compiled step sees plain pytrees.
"""

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mi_jax.training.state import TrainState, merge_model, split_model

LossFn = Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]]


def _cast_floats(tree, dtype):
  """Casts every floating leaf of `tree` to `dtype` (others untouched)."""
  if dtype is None:
    return tree
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
      tree)


def _cast_like(tree, like):
  """Casts each leaf of `tree` to the dtype of the matching leaf of `like`."""
  return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)


def global_norm(tree, *, concat: bool = True) -> jax.Array:
  """Global L2 norm `sqrt(sum_leaves sum_i x_i^2)` of the floating leaves of `tree`.

  Same value as `optax.global_norm` (up to float rounding order). On one
  device the leaves are raveled and concatenated inside one fusion, so XLA
  emits a single reduction instead of two or three small kernels per leaf
  (measured on the Tschannen §3.2 step on CPU, batch 128: the per-leaf
  `grad_norm` cost 10-18% of the step's CPU time, this form 3-7%;
  `experiments/benchmarks/step_speed.py --breakdown`). Traced under a mesh
  (`jax.set_mesh`, as `shard_train_step` does) it keeps `optax.global_norm`'s
  per-leaf sums, so sharded leaves are
  reduced where they live instead of being gathered for a concatenation;
  `concat=False` asks for that form too (e.g. under vmap, where the leaves
  carry a seed axis and the concatenation would be a real copy).
  """
  leaves = [x for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  if (not concat or len(leaves) == 1
      or not jax.sharding.get_abstract_mesh().empty):
    return optax.global_norm(leaves)
  dtype = jnp.result_type(*leaves)
  flat = jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])
  return jnp.sqrt(jnp.sum(jnp.square(flat)))


def make_train_step(
    graphdef,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    compute_dtype: Optional[jnp.dtype] = None,
    train_mode: bool = True,
):
  """Returns the pure train step `step(state, batch, key) -> (state, metrics)`.

  One step: merge `graphdef + params + rest` into a model (in train mode),
  `loss, aux = loss_fn(model, batch, key)`, gradients of the loss w.r.t.
  `params` only, `updates, opt_state = tx.update(grads, opt_state, params)`,
  `params = optax.apply_updates(params, updates)`, and the model's other
  variables (e.g. BatchNorm statistics it mutated) are re-split into `rest`.

  If the loss or any gradient is not finite, the returned state is the input
  state unchanged (selected with `lax.cond`) and `metrics["finite"]` is
  False; the caller decides to stop. `vmap_over_seeds(step)` keeps this per
  seed but runs the update under one `lax.cond` on "all seeds finite"
  (`step.vmap_seeds`), so the usual step has no select over the state.

  Args:
    graphdef: the static part from `init_train_state`.
    tx: the optax optimizer the state was built with.
    loss_fn: `loss_fn(model, batch, key) -> (loss, metrics)`, loss minimised.
    compute_dtype: e.g. `jnp.bfloat16`: the forward runs with params and the
      floating entries of `batch` cast to this dtype; params, gradients and
      optimizer state stay float32 (the bounds upcast scores to float32).
    train_mode: call `model.train()` after merging (BatchNorm uses batch stats).

  Returns:
    `step(state, batch, key)`; metrics hold `loss`, `grad_norm` (global L2
    norm of the gradients), `param_norm` (global L2 norm of the params after
    the step), `finite` and `loss_fn`'s metrics.
  """

  def forward(params, rest, batch, key):
    model = merge_model(
        graphdef, _cast_floats(params, compute_dtype), rest)
    if train_mode:
      model.train()
    loss, metrics = loss_fn(model, _cast_floats(batch, compute_dtype), key)
    _, _, new_rest = split_model(model)
    return jnp.asarray(loss, jnp.float32), (metrics, _cast_like(new_rest, rest))

  grad_fn = jax.value_and_grad(forward, has_aux=True)

  def apply_update(operand):
    state, grads, new_rest = operand
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        rest=new_rest, opt_state=opt_state)

  def gradients(state, batch, key, concat):
    (loss, (aux, new_rest)), grads = grad_fn(
        state.params, state.rest, batch, key)
    grad_norm = global_norm(grads, concat=concat)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return (state, grads, new_rest), (aux, loss, grad_norm, finite)

  def guarded_update(operand, finite):
    # lax.cond, not jnp.where over the state: on one device the skipped branch
    # costs nothing and the update stays in place (measured ~15% faster at the
    # §3.2 size on CPU); under vmap it becomes a select.
    return jax.lax.cond(finite, apply_update, lambda op: op[0], operand)

  def metrics_of(new_state, aux, loss, grad_norm, finite):
    # param_norm reads the *new* params: reading the old ones beside an
    # in-place update makes XLA copy every parameter first.
    metrics = dict(aux)
    metrics.update(
        loss=loss, grad_norm=grad_norm,
        param_norm=optax.global_norm(new_state.params), finite=finite)
    return metrics

  def step(state: TrainState, batch, key: jax.Array):
    operand, (aux, loss, grad_norm, finite) = gradients(
        state, batch, key, concat=True)
    new_state = guarded_update(operand, finite)
    return new_state, metrics_of(new_state, aux, loss, grad_norm, finite)

  def vmap_seeds(batch_axis, key_axis):
    """`jax.vmap(step, in_axes=(0, batch_axis, key_axis))`, guarded once.

    The gradients are vmapped; the update runs under one unbatched
    `lax.cond` on "every seed finite": its usual branch is the plain vmapped
    optimizer update, in place; only when some seed is not finite does the
    other branch keep that seed's state (the per-seed select that a plain
    `jax.vmap(step)` runs every step, with a copy of the whole stacked
    state). Gradient norms are per-leaf sums here (a concatenation of
    stacked leaves would copy them all).
    """
    grads_v = jax.vmap(functools.partial(gradients, concat=False),
                       in_axes=(0, batch_axis, key_axis))

    def vstep(states, batch, keys):
      operand, (aux, loss, grad_norm, finite_N) = grads_v(states, batch, keys)
      new_states = jax.lax.cond(
          jnp.all(finite_N), jax.vmap(apply_update),
          lambda op: jax.vmap(guarded_update)(op, finite_N), operand)
      return new_states, jax.vmap(metrics_of)(
          new_states, aux, loss, grad_norm, finite_N)

    return vstep

  step.vmap_seeds = vmap_seeds
  return step


def make_eval_step(graphdef, metric_fn: Callable, *, compute_dtype=None):
  """Returns the pure eval step `eval_step(state, batch, key) -> metrics`.

  The model is merged in eval mode (`model.eval()`: BatchNorm uses its running
  statistics and nothing is mutated). `metric_fn(model, batch, key)` returns a
  metrics dict, or a `(loss, metrics)` pair such as a `loss_fn` (then `loss`
  is added to the metrics).
  """

  def eval_step(state: TrainState, batch, key: jax.Array):
    model = merge_model(
        graphdef, _cast_floats(state.params, compute_dtype), state.rest)
    model.eval()
    out = metric_fn(model, _cast_floats(batch, compute_dtype), key)
    if isinstance(out, tuple):
      loss, metrics = out
      metrics = dict(metrics)
      metrics["loss"] = jnp.asarray(loss, jnp.float32)
      return metrics
    return dict(out)

  return eval_step


def vmap_over_seeds(step: Callable, *, batch_axis: Optional[int] = None,
                    key_axis: Optional[int] = 0):
  """`jax.vmap`s a step over a leading seed axis of the state.

  Args:
    step: `step(state, batch, key)` (train or eval step).
    batch_axis: None if every seed sees the same batch, 0 if the batch has a
      leading seed axis (one batch per seed).
    key_axis: 0 for one key per seed (`jax.random.split(key, N)`), None to
      share one key.

  A step from `make_train_step` (also wrapped by `with_batch_sampler` /
  `make_multi_step`) brings its own vmapped form, `step.vmap_seeds`, with the
  same results: the non-finite guard runs once for all seeds (see
  `make_train_step`). Any other step is `jax.vmap`ped.
  """
  vmapped = getattr(step, "vmap_seeds", None)
  if vmapped is not None:
    return vmapped(batch_axis, key_axis)
  return jax.vmap(step, in_axes=(0, batch_axis, key_axis))


def map_over_seeds(step: Callable, *, seeds_in_parallel: int = 1,
                   batch_axis: Optional[int] = None,
                   key_axis: Optional[int] = 0):
  """Like `vmap_over_seeds`, but `lax.map` over the seed axis in one program.

  `seeds_in_parallel` seeds are vmapped together per iteration of the map
  (`jax.lax.map(..., batch_size=seeds_in_parallel)`; 1: one seed at a time,
  so every matmul keeps its single-seed shape). On a CPU, whose cores one
  seed's step already fills, this avoids the batched per-seed-weight matmuls
  that `vmap` produces and XLA:CPU runs slower than the same matmuls one by
  one; on an accelerator use `vmap_over_seeds` (one seed leaves the device
  mostly idle). Same arguments and results as `vmap_over_seeds`.
  """
  def mapped(state, batch, key):
    xs = (state, batch if batch_axis is not None else None,
          key if key_axis is not None else None)

    def one(args):
      s, b, k = args
      return step(s, batch if batch_axis is None else b,
                  key if key_axis is None else k)

    return jax.lax.map(one, xs, batch_size=seeds_in_parallel)

  if batch_axis not in (None, 0) or key_axis not in (None, 0):
    raise ValueError("map_over_seeds takes batch_axis / key_axis 0 or None.")
  return mapped


def with_batch_sampler(step: Callable, sample_batch: Callable):
  """A step that draws its own batch: `step2(state, data, key)`.

  `key_batch, key_step = jax.random.split(key)`; the batch is
  `sample_batch(data, key_batch)` (e.g. rows of `data` drawn with
  replacement, or a synthetic batch from the key alone), then
  `step(state, batch, key_step)`. With `make_multi_step(..., batch_axis=None)`
  the batches are drawn inside the scan, so T batches never sit in memory.
  """

  def sampled(state, data, key):
    key_batch, key_step = jax.random.split(key)
    return step(state, sample_batch(data, key_batch), key_step)

  if hasattr(step, "vmap_seeds"):

    def vmap_seeds(batch_axis, key_axis):
      if batch_axis not in (None, 0) or key_axis not in (None, 0):
        return jax.vmap(sampled, in_axes=(0, batch_axis, key_axis))

      def vsampled(states, data, keys):
        if key_axis is None:
          key_batch, key_step = jax.random.split(keys)
        else:
          key_batch, key_step = jax.vmap(
              jax.random.split, in_axes=key_axis, out_axes=1)(keys)
        if batch_axis is None and key_axis is None:
          return step.vmap_seeds(None, None)(
              states, sample_batch(data, key_batch), key_step)
        batch = jax.vmap(sample_batch, in_axes=(batch_axis, key_axis))(
            data, key_batch)
        return step.vmap_seeds(0, key_axis)(states, batch, key_step)
      return vsampled

    sampled.vmap_seeds = vmap_seeds
  return sampled


def make_multi_step(step: Callable, num_steps: int, *,
                    batch_axis: Optional[int] = 0):
  """Runs `num_steps` train steps in one call with `lax.scan`.

  Returns `multi(state, batches, key) -> (state, metrics)`: step t gets key
  `jax.random.split(key, num_steps)[t]` and `batches[t]` (every leaf of
  `batches` has a leading axis of size `num_steps`), or with
  `batch_axis=None` the same `batches` every step (e.g. the data a
  `with_batch_sampler` step draws from). Every metric has a leading axis of
  size `num_steps`. Fewer Python dispatches per step; jit it (with
  `donate_argnums=0` to reuse the state buffers), or `vmap_over_seeds` it
  first.
  """
  if batch_axis not in (0, None):
    raise ValueError(f"batch_axis must be 0 or None, got {batch_axis!r}")

  def multi(state, batches, key):
    keys = jax.random.split(key, num_steps)
    if batch_axis is None:
      return jax.lax.scan(lambda carry, k: step(carry, batches, k), state, keys)

    def body(carry, inputs):
      batch, k = inputs
      return step(carry, batch, k)

    return jax.lax.scan(body, state, (batches, keys))

  if hasattr(step, "vmap_seeds"):
    multi.vmap_seeds = functools.partial(
        _vmap_multi, step, num_steps, batch_axis, multi)
  return multi


def _vmap_multi(step, num_steps, step_batch_axis, multi, batch_axis,
                key_axis):
  """`jax.vmap(multi, in_axes=(0, batch_axis, key_axis))` as a scan of the
  vmapped step (`step.vmap_seeds`): the same keys and batches per seed and
  step, metrics `[N, T, ...]`."""
  if batch_axis not in (None, 0) or key_axis not in (None, 0):
    return jax.vmap(multi, in_axes=(0, batch_axis, key_axis))
  per_step_batches = step_batch_axis is not None
  inner = step.vmap_seeds(batch_axis, key_axis)

  def vmulti(states, batches, key):
    if key_axis is None:
      keys_T = jax.random.split(key, num_steps)
    else:  # [N] keys -> [T, N]: seed s, step t gets split(key_s, T)[t].
      keys_T = jax.vmap(lambda k: jax.random.split(k, num_steps),
                        out_axes=1)(key)
    if per_step_batches:
      if batch_axis == 0:   # [N, T, ...] -> [T, N, ...]
        batches = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), batches)
      states, metrics = jax.lax.scan(
          lambda carry, xs: inner(carry, *xs), states, (batches, keys_T))
    else:
      states, metrics = jax.lax.scan(
          lambda carry, k: inner(carry, batches, k), states, keys_T)
    return states, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), metrics)

  return vmulti
