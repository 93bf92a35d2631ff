"""Tests for mi_jax.data.BatchIterator: determinism, host shards, resume."""
import json

import numpy as np
import pytest

from mi_jax import data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  # One folder per test session, shared by the data and evaluation tests:
  # mnist5k is prepared once (preparation is locked and idempotent).
  return str(tmp_path_factory.getbasetemp() / "mi_jax_tfds")


def _arrays(n=50):
  return {"image": np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1),
          "label": np.arange(n, dtype=np.int32)}


def _labels(it, steps):
  return [next(it)["label"] for _ in range(steps)]


def test_same_seed_same_batches_other_seed_other_batches():
  a = _labels(data.BatchIterator(_arrays(), 8, seed=3), 10)
  b = _labels(data.BatchIterator(_arrays(), 8, seed=3), 10)
  c = _labels(data.BatchIterator(_arrays(), 8, seed=4), 10)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_epoch_is_the_seeded_permutation():
  it = data.BatchIterator(_arrays(50), 10, seed=7, shard_index=0, shard_count=1)
  assert it.steps_per_epoch == 5
  epoch0 = np.concatenate(_labels(it, 5))
  epoch1 = np.concatenate(_labels(it, 5))
  np.testing.assert_array_equal(
      epoch0, np.random.default_rng((7, 0)).permutation(50))
  np.testing.assert_array_equal(
      epoch1, np.random.default_rng((7, 1)).permutation(50))


def test_host_shards_are_disjoint_and_tile_the_global_batch():
  whole = data.BatchIterator(_arrays(), 12, seed=0, shard_index=0,
                             shard_count=1)
  hosts = [data.BatchIterator(_arrays(), 12, seed=0, shard_index=i,
                              shard_count=4) for i in range(4)]
  for _ in range(6):  # crosses an epoch boundary (4 batches per epoch)
    parts = [next(h)["label"] for h in hosts]
    assert all(len(p) == 3 for p in parts)
    assert len(set(np.concatenate(parts))) == 12
    np.testing.assert_array_equal(np.concatenate(parts), next(whole)["label"])


def test_resume_mid_epoch_gives_identical_batches():
  it = data.BatchIterator(_arrays(), 8, seed=1, shard_index=1, shard_count=2)
  _labels(it, 3)  # mid-epoch (6 batches per epoch)
  state = json.loads(json.dumps(it.get_state()))  # survives a JSON checkpoint
  assert all(isinstance(v, int) for v in state.values())
  expected = _labels(it, 9)  # continues into the next epochs
  resumed = data.BatchIterator(_arrays(), 8, seed=1, shard_index=1,
                               shard_count=2)
  resumed.set_state(state)
  for x, y in zip(expected, _labels(resumed, 9)):
    np.testing.assert_array_equal(x, y)


def test_set_state_with_other_seed_is_an_error():
  it = data.BatchIterator(_arrays(), 8, seed=1)
  with pytest.raises(ValueError, match="seed"):
    data.BatchIterator(_arrays(), 8, seed=2).set_state(it.get_state())


def test_batch_size_not_divisible_by_shard_count_is_an_error():
  with pytest.raises(ValueError, match="not divisible by shard_count 4"):
    data.BatchIterator(_arrays(), 10, seed=0, shard_index=0, shard_count=4)


def test_drop_remainder_and_num_epochs():
  kept = list(data.BatchIterator(_arrays(50), 16, seed=0, shard_index=0,
                                 shard_count=1, drop_remainder=False,
                                 num_epochs=2))
  assert [len(b["label"]) for b in kept] == [16, 16, 16, 2] * 2
  dropped = list(data.BatchIterator(_arrays(50), 16, seed=0, shard_index=0,
                                    shard_count=1, num_epochs=1))
  assert [len(b["label"]) for b in dropped] == [16, 16, 16]


def test_source_and_arrays_give_the_same_batches(data_dir):
  source = data.data_source("mnist5k", "test", data_dir=data_dir)
  arrays = data.load_arrays("mnist5k", "test", data_dir=data_dir)
  from_source = data.BatchIterator(source, 32, seed=5, shard_index=0,
                                   shard_count=1)
  from_arrays = data.BatchIterator(arrays, 32, seed=5, shard_index=0,
                                   shard_count=1)
  for _ in range(3):
    a, b = next(from_source), next(from_arrays)
    assert a["image"].dtype == np.float32 and a["label"].dtype == np.int32
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
