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
"""

from typing import Callable, Optional

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh(axis_name: str = "data", devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over all devices of all hosts (`jax.devices()`), axis `axis_name`.

  Built with `jax.make_mesh((n,), (axis_name,), axis_types=(AxisType.Auto,))`;
  pass `devices` to use a subset.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (axis_name,),
                       axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The sharding that puts a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh, axis_name: str = "data",
                   batch_dim: int = 0) -> NamedSharding:
  """The sharding that splits dimension `batch_dim` over `axis_name`."""
  return NamedSharding(mesh, P(*([None] * batch_dim), axis_name))


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


def shard_batch(batch, mesh: jax.sharding.Mesh, axis_name: str = "data"):
  """Puts a global batch (the same full batch on every host) onto the mesh.

  Every leaf is split along axis 0 over `axis_name`. For host-local batches
  (each host holds its own part) use `host_local_to_global`.
  """
  _check_divisible(batch, mesh.shape[axis_name], 0, "Global")
  return jax.device_put(batch, batch_sharding(mesh, axis_name))


def host_local_to_global(batch, mesh: jax.sharding.Mesh,
                         axis_name: str = "data"):
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


def shard_train_step(step: Callable, mesh: jax.sharding.Mesh, *,
                     axis_name: str = "data", batch_dim: int = 0,
                     donate_state: bool = False,
                     has_state_output: bool = True):
  """Jits `step(state, batch, key)` for data parallelism over `mesh`.

  State, key and outputs are replicated; every leaf of `batch` is split along
  `batch_dim` (0 for a step; 1 for `make_multi_step`'s `[T, B, ...]`
  batches) over `axis_name`. The result is the single-device result on the
  same global batch (see the module docstring). A batch whose size does not
  divide over the devices raises a `ValueError` saying what to do.

  Args:
    step: a train step (or an eval step with `has_state_output=False`).
    mesh: e.g. `make_mesh()`.
    axis_name: the mesh axis the batch is split over.
    batch_dim: which axis of each batch leaf is the batch axis.
    donate_state: donate the input state's buffers to the output state.
    has_state_output: False for `eval(state, batch, key) -> metrics`.

  Returns:
    `sharded(state, batch, key)` with the same outputs as `step`.
  """
  rep = replicated(mesh)
  data = batch_sharding(mesh, axis_name, batch_dim)
  out = (rep, rep) if has_state_output else rep
  jitted = jax.jit(step, in_shardings=(rep, data, rep), out_shardings=out,
                   donate_argnums=(0,) if donate_state else ())
  n = mesh.shape[axis_name]

  def sharded(state, batch, key):
    _check_divisible(batch, n, batch_dim, "Global")
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
