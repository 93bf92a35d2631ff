"""Input that keeps up with the step: data on the device, or prefetched batches.

Two ways to feed `step(state, batch, key)` without stalling it on host->device
copies:

* `DeviceData` + `make_gather_multi_step`: a data set small enough to sit on
  the device (e.g. MNIST: 60k x 784 float32 = 188 MB) is put there once; the
  compiled multi-step (`lax.scan` over `T` steps) gathers batch `t` as
  `data[indices_TxB[t]]` itself. Only the `[T, B]` int32 indices come from
  the host, from the same `BatchIterator` permutation as the host path, so a
  run fed this way sees the same batches and resumes exactly from the
  iterator state saved in its checkpoints.
* `Prefetcher`: for data sets read from disk, a background thread reads the
  next batches of this host's `BatchIterator` and puts them on the devices
  (sharded over the mesh, `host_local_to_global` on several hosts) while the
  step runs; `state()` is the iterator position *after the last consumed
  batch*, which is what a checkpoint must hold.
"""

import queue
import threading
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


class DeviceData:
  """A dict of arrays held on the device(s) plus a host-side index iterator.

  Args:
    arrays: dict of equally long arrays (e.g. `load_arrays(...)`).
    iterator: a `BatchIterator` over the *global* batch (shard_count=1: every
      host holds all the data and draws the same indices); only its
      `local_indices` and position are used, it never reads data.
    sharding: where the arrays go (e.g. `sharding.replicated(mesh)`); None:
      the default device.
  """

  def __init__(self, arrays: dict, iterator, sharding=None):
    if iterator.shard_count != 1:
      raise ValueError(
          "DeviceData needs a BatchIterator over the global batch "
          "(shard_count=1): every host keeps all the data on its devices and "
          f"draws the same indices; got shard_count={iterator.shard_count}.")
    host = {k: np.asarray(v) for k, v in arrays.items()}
    if sharding is None:
      self.arrays = jax.device_put(host)
    else:
      from mi_jax.training import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
      self.arrays = sharding_lib.place(host, jax.tree.map(lambda _: sharding,
                                                          host))
    self.iterator = iterator

  def next_indices(self, num_steps: int) -> np.ndarray:
    """The int32 `[num_steps, B]` indices of the next batches; advances the iterator."""
    it, out = self.iterator, []
    for _ in range(num_steps):
      pos = it.get_state()
      out.append(it.local_indices(pos["epoch"], pos["batch"]))
      nxt = pos["batch"] + 1
      epoch = pos["epoch"] + (nxt == it.steps_per_epoch)
      it.set_state(dict(pos, epoch=epoch, batch=nxt % it.steps_per_epoch))
    return np.stack(out).astype(np.int32)

  def state(self) -> dict:
    """The iterator position (for checkpoints)."""
    return self.iterator.get_state()


def gather(arrays: dict, indices_B: jax.Array) -> dict:
  """`{k: v[indices]}`: one batch from on-device arrays (inside jit)."""
  return {k: v[indices_B] for k, v in arrays.items()}


def make_gather_multi_step(step: Callable, num_steps: int, *,
                           split_key: bool = True,
                           variable_length: bool = False):
  """`lax.scan` of `num_steps` steps that gather their batches on the device.

  Returns `multi(state, arrays, indices_TxB, key) -> (state, metrics_T)`:
  step t runs `step(state, gather(arrays, indices_TxB[t]), keys[t])` with
  `keys = jax.random.split(key, num_steps)` (as `make_multi_step`), or with
  `split_key=False` the same `key` every step (for steps that fold their
  step number into it, as the engine's do). `num_steps=1` is one step with
  no loop (metrics still get the leading axis of size 1). Convolutional
  steps belong in the loop only with `encoders.conv_op` convolutions: XLA:CPU
  runs `lax`'s own conv gradients ~20x slower inside a loop body
  (docs/training.md). Jit it, with `donate_argnums=0`; over a mesh use
  `shard_gather_multi_step`.

  `variable_length=True` (with `split_key=False`, `num_steps` > 1): returns
  `multi(state, arrays, indices_TxB, key, n)`, which runs the first `n`
  (1 <= n <= num_steps, a runtime int32) of the `num_steps` rows of
  `indices_TxB` in a `lax.fori_loop` with a dynamic trip count; metrics rows
  from `n` on are zeros. Every call, whatever its `n`, runs the same compiled
  loop body, so a run's numbers do not depend on where its calls end (a
  resumed run ends and starts calls elsewhere than the uninterrupted one),
  and one compile serves every call length. With a static scan of each
  length instead, XLA compiles each length (and a single step, unrolled)
  separately and may round differently in the last bits (measured: a
  diagonal-only InfoNCE step gave params ~6e-4 apart after 12 Adam steps
  run as 12 calls of 1 step vs calls of 4, 2, 2, 4).
  """
  if variable_length and num_steps > 1:
    if split_key:
      raise ValueError("variable_length needs split_key=False (the keys of "
                       "split(key, num_steps) would depend on num_steps).")

    def multi_n(state, arrays, indices_TxB, key, n):
      metrics_T = jax.tree.map(
          lambda m: jnp.zeros((num_steps, *m.shape), m.dtype),
          jax.eval_shape(step, state, gather(arrays, indices_TxB[0]), key)[1])

      def body(t, carry):
        s, ms = carry
        s, m = step(s, gather(arrays, indices_TxB[t]), key)
        return s, jax.tree.map(lambda buf, x: buf.at[t].set(x), ms, m)

      return jax.lax.fori_loop(0, n, body, (state, metrics_T))

    return multi_n

  def multi(state, arrays, indices_TxB, key):
    if num_steps == 1:  # No loop needed.
      k = key if not split_key else jax.random.split(key, 1)[0]
      state, metrics = step(state, gather(arrays, indices_TxB[0]), k)
      return state, jax.tree.map(lambda x: x[None], metrics)
    if not split_key:
      return jax.lax.scan(
          lambda carry, idx_B: step(carry, gather(arrays, idx_B), key),
          state, indices_TxB)
    keys = jax.random.split(key, num_steps)

    def body(carry, inputs):
      idx_B, k = inputs
      return step(carry, gather(arrays, idx_B), k)

    return jax.lax.scan(body, state, (indices_TxB, keys))

  return multi


def shard_gather_multi_step(step: Callable, num_steps: int, mesh, *,
                            state_sharding=None, donate_state: bool = True,
                            split_key: bool = True,
                            variable_length: bool = False):
  """`make_gather_multi_step` jitted over `mesh`: data replicated, indices split over the batch.

  Each device gathers its own rows of every batch from its replicated copy
  of the data (no communication for the input). Returns
  `sharded(state, arrays, indices_TxB, key)`; the indices may be a NumPy
  array, the same on every host. `variable_length` as in
  `make_gather_multi_step` (then `sharded(state, arrays, indices_TxB, key, n)`).
  """
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from mi_jax.training import sharding  # pylint: disable=g-import-not-at-top
  rep = sharding.replicated(mesh)
  state_sh = rep if state_sharding is None else state_sharding
  idx = NamedSharding(mesh, P(None, sharding.batch_axes(mesh)))
  dynamic = variable_length and num_steps > 1
  jitted = jax.jit(make_gather_multi_step(step, num_steps,
                                          split_key=split_key,
                                          variable_length=variable_length),
                   in_shardings=(state_sh, rep, idx, rep) + (
                       (rep,) if dynamic else ()),
                   out_shardings=(state_sh, rep),
                   donate_argnums=(0,) if donate_state else ())

  def sharded(state, arrays, indices_TxB, key, *n):
    if isinstance(indices_TxB, np.ndarray):
      indices_TxB = sharding.place(indices_TxB, idx)
    with jax.set_mesh(mesh):
      return jitted(state, arrays, indices_TxB, key, *n[:int(dynamic)])

  sharded.jitted = jitted
  return sharded


class Prefetcher:
  """Reads and places the next `depth` batches of an iterator in a background thread.

  Args:
    iterator: a `BatchIterator` (this host's part of every global batch).
    place: host batch -> device batch, e.g.
      `lambda b: sharding.host_local_to_global(b, mesh)` or `jax.device_put`.
    depth: how many batches are read ahead.

  `next(prefetcher)` returns the next device batch; `state()` is the iterator
  position after the last batch returned (not after the read-ahead ones), so
  a checkpoint taken between steps resumes exactly. `close()` stops the
  thread.
  """

  def __init__(self, iterator, place: Callable[[Any], Any], depth: int = 2):
    if depth < 1:
      raise ValueError(f"prefetch depth must be >= 1, got {depth}.")
    self._iterator, self._place = iterator, place
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._state: Optional[dict] = iterator.get_state()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    try:
      for batch in self._iterator:
        item = (self._place(batch), self._iterator.get_state())
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
      self._queue.put(StopIteration())
    except Exception as e:  # pylint: disable=broad-except
      self._queue.put(e)    # re-raised in the consumer

  def __iter__(self):
    return self

  def __next__(self):
    item = self._queue.get()
    if isinstance(item, BaseException):
      self._queue.put(item)
      raise item
    batch, self._state = item
    return batch

  def state(self) -> dict:
    """Iterator position after the last consumed batch (for checkpoints)."""
    return dict(self._state)

  def close(self):
    """Stops the background thread (pending batches are dropped)."""
    self._stop.set()
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join(timeout=5)


class IteratorFeed:
  """Feeds a step one batch per call from an iterator (read in the loop, or a `Prefetcher`).

  Args:
    step: `step(state, batch, key) -> (state, metrics)` (compiled).
    batches: an iterator of batches the step takes.
    get_state: () -> the iterator position after the last consumed batch.
    close: called by `close()` (e.g. `Prefetcher.close`).
  """

  stacked = False  # `run` returns the last step's metrics as they are.

  def __init__(self, step: Callable, batches, get_state: Callable[[], dict],
               close: Callable[[], None] = lambda: None):
    self._step, self._batches = step, batches
    self._get_state, self._close = get_state, close

  def run(self, state, num_steps: int, key):
    """`num_steps` steps; returns (state, last metrics, [finite flag per step])."""
    finite = []
    for _ in range(num_steps):
      state, metrics = self._step(state, next(self._batches), key)
      finite.append(metrics["finite"])
    return state, metrics, finite

  def state(self) -> dict:
    return self._get_state()

  def close(self) -> None:
    self._close()


class DeviceFeed:
  """Feeds `num_steps` steps per call from a `DeviceData`, gathered inside the compiled scan.

  Args:
    data: the `DeviceData` (arrays on the device(s), host index iterator).
    multi_step: `num_steps -> fn(state, arrays, indices_TxB, key) ->
      (state, metrics_T)` (compiled, e.g. `shard_gather_multi_step`; cached
      by the caller, one compile per distinct `num_steps`).
    max_steps: if given (> 1), every call runs the one program
      `multi_step(max_steps, variable_length=True)` (see
      `make_gather_multi_step`) with the indices padded to `max_steps` rows
      and the number of steps to run as an argument: one compile, and the
      same compiled step whatever the call's length (bitwise-reproducible
      resumes). `run(..., num_steps)` then needs `num_steps <= max_steps`.
  """

  stacked = True  # `run` returns every metric with a leading [num_steps] axis.

  def __init__(self, data: DeviceData, multi_step: Callable[..., Callable],
               max_steps: Optional[int] = None):
    self._data, self._multi_step = data, multi_step
    self._max_steps = max_steps if max_steps and max_steps > 1 else None

  def run(self, state, num_steps: int, key):
    """`num_steps` steps; returns (state, metrics_T, finite_T)."""
    indices = self._data.next_indices(num_steps)
    t_max = self._max_steps
    if t_max is None:
      state, metrics = self._multi_step(num_steps)(
          state, self._data.arrays, indices, key)
      return state, metrics, metrics["finite"]
    if num_steps > t_max:
      raise ValueError(f"{num_steps} steps in one call; at most {t_max}.")
    padded = np.zeros((t_max, *indices.shape[1:]), indices.dtype)
    padded[:num_steps] = indices
    state, metrics = self._multi_step(t_max, variable_length=True)(
        state, self._data.arrays, padded, key, np.int32(num_steps))
    if num_steps < t_max:
      metrics = jax.tree.map(lambda x: x[:num_steps], metrics)
    return state, metrics, metrics["finite"]

  def state(self) -> dict:
    return self._data.state()

  def close(self) -> None:
    pass
