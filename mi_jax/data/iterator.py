"""`BatchIterator`: deterministic, host-sharded, resumable batches.

Epoch `e` visits the examples in the order
`np.random.default_rng((seed, e)).permutation(N)`; global batch `b` of that
epoch is the slice `[b * B, (b + 1) * B)` of the permutation, and host `i` of
`k` reads the i-th contiguous `B / k` part of it. Concatenating the hosts'
local batches in host order therefore gives the same global batch whatever
`k` is, which is what a batch sharded over a mesh's `data` axis expects.

The position is two integers (`epoch`, `batch`), so `get_state()` /
`set_state()` are a dict of ints that goes into a checkpoint and resumes
exactly mid-epoch.

Why not `grain`: grain's `IndexSampler` + `DataLoader` give the same
guarantees, but add a dependency and worker processes that a data set held in
memory or in one ArrayRecord source does not need; this index iterator is
short, has no threads, and its state is plain JSON.
"""
import numpy as np

from mi_jax.data import loader


def _num_examples(data):
  """Length of a dict of arrays (checked equal) or of a random-access source."""
  if isinstance(data, dict):
    if not data:
      raise ValueError("BatchIterator got an empty dict of arrays.")
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"Arrays have different lengths: {lengths}.")
    return next(iter(lengths.values()))
  return len(data)


class BatchIterator:
  """Infinite (or `num_epochs`-long) iterator of this host's batches.

  Args:
    data: a dict of arrays with a common leading axis (e.g. from
      `load_arrays`), or a random-access source (e.g. from `data_source`),
      whose batches come back as `{"image": f32 in [0, 1], "label": i32}`.
    batch_size: the global batch size B, summed over all hosts.
    seed: seeds the per-epoch permutations.
    shard_index: this host's index i (default `jax.process_index()`).
    shard_count: the number of hosts k (default `jax.process_count()`);
      must divide B.
    drop_remainder: drop the last, incomplete global batch of each epoch. If
      False it is kept and split over hosts with `np.array_split` (hosts may
      then get unequal sizes).
    num_epochs: stop after this many epochs; None iterates forever.
  """

  def __init__(self, data, batch_size, *, seed, shard_index=None,
               shard_count=None, drop_remainder=True, num_epochs=None):
    if shard_index is None or shard_count is None:
      import jax  # pylint: disable=g-import-not-at-top  # keep mi_jax.data light
      shard_index = jax.process_index() if shard_index is None else shard_index
      shard_count = jax.process_count() if shard_count is None else shard_count
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if not 0 <= shard_index < shard_count:
      raise ValueError(
          f"shard_index {shard_index} not in [0, shard_count={shard_count}).")
    if batch_size % shard_count:
      raise ValueError(
          f"batch_size {batch_size} is not divisible by shard_count "
          f"{shard_count}: every host must read an equal part of a batch.")
    self._data = data
    self._num_examples = _num_examples(data)
    if drop_remainder and batch_size > self._num_examples:
      raise ValueError(
          f"batch_size {batch_size} > {self._num_examples} examples with "
          "drop_remainder=True: an epoch would have no batch.")
    self.batch_size = batch_size
    self.local_batch_size = batch_size // shard_count
    self.seed = int(seed)
    self.shard_index = shard_index
    self.shard_count = shard_count
    self.drop_remainder = drop_remainder
    self.num_epochs = num_epochs
    self._epoch = 0
    self._batch = 0
    self._perm_epoch, self._perm = None, None

  @property
  def steps_per_epoch(self) -> int:
    """Global batches per epoch."""
    if self.drop_remainder:
      return self._num_examples // self.batch_size
    return -(-self._num_examples // self.batch_size)

  def get_state(self) -> dict:
    """The position, `{"seed", "epoch", "batch"}` as ints, for a checkpoint."""
    return {"seed": self.seed, "epoch": self._epoch, "batch": self._batch}

  def set_state(self, state) -> None:
    """Moves to a position saved by `get_state` (same seed required)."""
    if int(state["seed"]) != self.seed:
      raise ValueError(
          f"State was saved with seed {int(state['seed'])}, this iterator "
          f"has seed {self.seed}.")
    epoch, batch = int(state["epoch"]), int(state["batch"])
    if epoch < 0 or not 0 <= batch < self.steps_per_epoch:
      raise ValueError(f"Invalid iterator state {dict(state)}.")
    self._epoch, self._batch = epoch, batch

  def _permutation(self, epoch):
    if self._perm_epoch != epoch:
      rng = np.random.default_rng((self.seed, epoch))
      self._perm_epoch, self._perm = epoch, rng.permutation(self._num_examples)
    return self._perm

  def local_indices(self, epoch, batch):
    """Indices of this host's part of global batch `batch` of `epoch`."""
    perm = self._permutation(epoch)
    global_B = perm[batch * self.batch_size:(batch + 1) * self.batch_size]
    if len(global_B) == self.batch_size:
      b = self.local_batch_size
      return global_B[self.shard_index * b:(self.shard_index + 1) * b]
    return np.array_split(global_B, self.shard_count)[self.shard_index]

  def _read(self, indices):
    if isinstance(self._data, dict):
      return {k: np.asarray(v[indices]) for k, v in self._data.items()}
    return loader.read_batch(self._data, indices)

  def __iter__(self):
    return self

  def __next__(self):
    if self.num_epochs is not None and self._epoch >= self.num_epochs:
      raise StopIteration
    batch = self._read(self.local_indices(self._epoch, self._batch))
    self._batch += 1
    if self._batch == self.steps_per_epoch:
      self._epoch, self._batch = self._epoch + 1, 0
    return batch
