"""Data-parallel sharding of the train step over a device mesh of all hosts.

Design: `jax.jit` with shardings, not `jax.shard_map`. The state is replicated
and every batch leaf is split along its leading axis over the mesh axis
`data`; the step function is the unchanged single-device step, so its meaning
is the single-device meaning on the *global* batch. XLA's SPMD partitioner
inserts the collectives: the all-gather of the second view's embeddings that
makes the `[B, B]` score matrix span the global batch (negatives from every
device), the all-reduce of the loss and of the gradients, and the global
BatchNorm statistics. With `shard_map` every objective would have to know the
axis name and gather its own negatives (and its own BatchNorm moments); with
jit the objectives stay device-agnostic and the sharded loss equals the
single-device loss by construction, which is what the tests check.

The mesh axis type is `AxisType.Auto` (set explicitly): `Explicit` axes make
sharding part of the types, and `za_BxD @ zb_BxD.T` with both operands split
over `data` is then a type error instead of an all-gather.

Parameters and optimizer state are replicated by default. `state_shardings(
state, mesh, params="fsdp")` shards them instead (FSDP / ZeRO-3 style): every
large enough leaf of `params` and `opt_state` is split along its largest
dimension divisible by the size of the mesh axis `fsdp_axis` ("model" on a
`data x model` mesh, else "data"); the batch is always split over every mesh
axis. XLA then all-gathers each parameter for the forward / backward pass and
reduce-scatters its gradient, so the optimizer update runs on shards: the
memory per device for parameters + optimizer state drops by the axis size.
The step is traced inside `jax.set_mesh(mesh)`, so library code that wants
explicit collectives (the blocked bounds' `shard_map`) can see the mesh.
"""

import math
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

PARAM_SHARDINGS = ("replicated", "fsdp")


def make_mesh(axis_name: str = "data", devices=None, *,
              shape: Optional[Sequence[int]] = None,
              axis_names: Optional[Sequence[str]] = None) -> jax.sharding.Mesh:
  """A mesh over all devices of all hosts (`jax.devices()`), Auto axes.

  Default: 1-D, axis `axis_name`. `shape=(-1, 2)` with
  `axis_names=("data", "model")` builds a 2-D mesh (one -1 entry takes the
  remaining devices). Pass `devices` to use a subset.
  """
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  shape = (n,) if shape is None else tuple(int(s) for s in shape)
  names = (axis_name,) if axis_names is None else tuple(axis_names)
  if len(names) != len(shape):
    raise ValueError(f"mesh shape {shape} and axis names {names} differ in "
                     "length; give one name per mesh axis.")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape} has more than one -1.")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if known <= 0 or n % known:
      raise ValueError(f"mesh shape {shape} does not divide {n} devices.")
    shape = tuple(n // known if s == -1 else s for s in shape)
  if math.prod(shape) != n:
    raise ValueError(f"mesh shape {shape} needs {math.prod(shape)} devices, "
                     f"{n} are available; use -1 for the data axis.")
  return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(shape),
                       devices=devices)


def batch_axes(mesh: jax.sharding.Mesh) -> tuple[str, ...]:
  """The axes a batch is split over: every axis of `mesh`, in mesh order."""
  return tuple(mesh.axis_names)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The sharding that puts a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def _axes(mesh, axis_name):
  axes = batch_axes(mesh) if axis_name is None else axis_name
  if isinstance(axes, str):
    return axes
  return axes[0] if len(axes) == 1 else tuple(axes)


def _axis_size(mesh, axis_name) -> int:
  axes = _axes(mesh, axis_name)
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


def batch_sharding(mesh: jax.sharding.Mesh, axis_name=None,
                   batch_dim: int = 0) -> NamedSharding:
  """The sharding that splits dimension `batch_dim` over `axis_name`.

  `axis_name` None: every axis of the mesh (`batch_axes`).
  """
  return NamedSharding(mesh, P(*([None] * batch_dim), _axes(mesh, axis_name)))


def _check_divisible(batch, n: int, batch_dim: int, what: str):
  for path, x in jax.tree_util.tree_leaves_with_path(batch):
    size = np.shape(x)[batch_dim]
    if size % n:
      name = jax.tree_util.keystr(path)
      raise ValueError(
          f"{what} batch entry {name} has size {size} along axis {batch_dim}, "
          f"which does not divide over {n} devices. Use a batch size that is "
          f"a multiple of {n} (e.g. {max(n, size - size % n)} or "
          f"{size + n - size % n}), or build the mesh over fewer devices.")


def shard_batch(batch, mesh: jax.sharding.Mesh, axis_name=None):
  """Puts a global batch (the same full batch on every host) onto the mesh.

  Every leaf is split along axis 0 over `axis_name` (None: all mesh axes).
  For host-local batches (each host holds its own part) use
  `host_local_to_global`.
  """
  _check_divisible(batch, _axis_size(mesh, axis_name), 0, "Global")
  return jax.device_put(batch, batch_sharding(mesh, axis_name))


def host_local_to_global(batch, mesh: jax.sharding.Mesh, axis_name=None):
  """Assembles each host's local batch into one global array per leaf.

  Host `p` passes its own rows (`B_global / num_processes` of them, in
  process order); the result is a global `jax.Array` split along axis 0 over
  `axis_name` (`jax.make_array_from_process_local_data`).
  """
  local_devices = sum(d.process_index == jax.process_index()
                      for d in mesh.devices.flat)
  _check_divisible(batch, local_devices, 0, "Host-local")
  sharding = batch_sharding(mesh, axis_name)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def fsdp_axis(mesh: jax.sharding.Mesh) -> str:
  """The axis FSDP shards parameters over: "model" if the mesh has it, else "data"."""
  return "model" if "model" in mesh.axis_names else mesh.axis_names[0]


def fsdp_spec(shape: Sequence[int], axis_size: int, axis: str,
              min_size: int = 2**12) -> P:
  """PartitionSpec of one leaf: its largest axis divisible by `axis_size` on `axis`.

  Leaves with fewer than `min_size` elements (biases, scalars, BatchNorm
  scales), or with no divisible dimension, stay replicated (`P()`).
  """
  if axis_size == 1 or math.prod(shape) < min_size:
    return P()
  dims = [d for d in range(len(shape)) if shape[d] % axis_size == 0]
  if not dims:
    return P()
  best = max(dims, key=lambda d: (shape[d], -d))
  return P(*([None] * best), axis)


def state_shardings(state: Any, mesh: jax.sharding.Mesh, *,
                    params: str = "replicated", axis: Optional[str] = None,
                    min_size: int = 2**12) -> Any:
  """Shardings for a TrainState (a pytree of `NamedSharding`, same structure).

  `params="replicated"`: everything on every device. `params="fsdp"`: each
  leaf of `state.params` and `state.opt_state` gets `fsdp_spec` over `axis`
  (default `fsdp_axis(mesh)`); Adam's moments have their parameter's shape
  and so its sharding. `step` and `rest` (BatchNorm statistics) stay
  replicated. Works on concrete arrays and on `jax.ShapeDtypeStruct`s.
  """
  if params not in PARAM_SHARDINGS:
    raise ValueError(f"param sharding {params!r} is not one of "
                     f"{PARAM_SHARDINGS}; use 'fsdp' to shard parameters and "
                     "optimizer state, 'replicated' for small models.")
  rep = replicated(mesh)
  if params == "replicated":
    return jax.tree.map(lambda _: rep, state)
  axis = fsdp_axis(mesh) if axis is None else axis
  size = mesh.shape[axis]

  def leaf(x):
    return NamedSharding(mesh, fsdp_spec(np.shape(x), size, axis, min_size))

  return state.replace(
      step=rep, rest=jax.tree.map(lambda _: rep, state.rest),
      params=jax.tree.map(leaf, state.params),
      opt_state=jax.tree.map(leaf, state.opt_state))


def place(tree: Any, shardings: Any) -> Any:
  """Puts host values (the same on every host) onto `shardings` (a matching tree).

  One host: `jax.device_put`. Several hosts: each host contributes the
  shards of its own devices (`jax.make_array_from_callback`).
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def one(x, sh):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

  return jax.tree.map(one, tree, shardings)


def bytes_per_device(tree: Any, shardings: Any) -> int:
  """Bytes one device holds of `tree` (arrays or ShapeDtypeStructs) under `shardings`.

  The largest shard of each leaf (`sharding.shard_shape`), summed.
  """
  total = 0
  for x, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    shard = sh.shard_shape(tuple(np.shape(x)))
    total += math.prod(shard) * np.dtype(x.dtype).itemsize
  return total


def shard_train_step(step: Callable, mesh: jax.sharding.Mesh, *,
                     axis_name=None, batch_dim: int = 0,
                     donate_state: bool = False,
                     has_state_output: bool = True,
                     state_sharding: Any = None):
  """Jits `step(state, batch, key)` for data parallelism over `mesh`.

  State, key and outputs are replicated unless `state_sharding` (e.g. from
  `state_shardings(state, mesh, params="fsdp")`) says otherwise; every leaf
  of `batch` is split along `batch_dim` (0 for a step; 1 for
  `make_multi_step`'s `[T, B, ...]` batches) over `axis_name` (None: all mesh
  axes). The result is the single-device result on the same global batch
  (see the module docstring). A batch whose size does not divide over the
  devices raises a `ValueError` saying what to do.

  Args:
    step: a train step (or an eval step with `has_state_output=False`).
    mesh: e.g. `make_mesh()`.
    axis_name: the mesh axis (or axes) the batch is split over.
    batch_dim: which axis of each batch leaf is the batch axis.
    donate_state: donate the input state's buffers to the output state.
    has_state_output: False for `eval(state, batch, key) -> metrics`.
    state_sharding: a pytree of shardings matching the state (also the
      output state's), or None for replicated.

  Returns:
    `sharded(state, batch, key)` with the same outputs as `step`; it traces
    `step` inside `jax.set_mesh(mesh)`.
  """
  rep = replicated(mesh)
  state_sh = rep if state_sharding is None else state_sharding
  data = batch_sharding(mesh, axis_name, batch_dim)
  out = (state_sh, rep) if has_state_output else rep
  jitted = jax.jit(step, in_shardings=(state_sh, data, rep),
                   out_shardings=out,
                   donate_argnums=(0,) if donate_state else ())
  n = _axis_size(mesh, axis_name)

  def sharded(state, batch, key):
    _check_divisible(batch, n, batch_dim, "Global")
    with jax.set_mesh(mesh):
      return jitted(state, batch, key)

  sharded.jitted = jitted
  return sharded


def replicate(tree, mesh: jax.sharding.Mesh):
  """Puts a pytree (e.g. a TrainState) on every device of `mesh`.

  Single-host only (`jax.device_put` of host values); on several hosts every
  host must hold the same values, and `jax.make_array_from_process_local_data`
  with the replicated sharding is used instead.
  """
  rep = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, rep)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
          rep, np.asarray(x), np.shape(x)), tree)


def local_batch_slice(global_batch_size: int,
                      process_index: Optional[int] = None,
                      process_count: Optional[int] = None) -> slice:
  """Rows of a global batch that host `process_index` feeds (contiguous)."""
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  if global_batch_size % n:
    raise ValueError(
        f"Global batch size {global_batch_size} does not divide over {n} "
        f"processes; use a multiple of {n}.")
  per = global_batch_size // n
  return slice(p * per, (p + 1) * per)
