"""Tests for mi_jax.data: the embedded mnist5k TFDS dataset and the loader."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mi_jax import data
from mi_jax.data import embedded
from mi_jax.data import loader


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  # One folder per test session, shared by the data and evaluation tests:
  # mnist5k is prepared once (preparation is locked and idempotent).
  return str(tmp_path_factory.getbasetemp() / "mi_jax_tfds")


def test_mnist5k_splits_shapes_and_balance(data_dir):
  train = data.load_arrays("mnist5k", "train", data_dir=data_dir)
  test = data.load_arrays("mnist5k", "test", data_dir=data_dir)
  assert train["image"].shape == (4000, 28, 28, 1)
  assert test["image"].shape == (1000, 28, 28, 1)
  for split in (train, test):
    assert split["image"].dtype == np.float32
    assert split["label"].dtype == np.int32
    assert split["image"].min() == 0.0 and split["image"].max() == 1.0
  np.testing.assert_array_equal(np.bincount(train["label"]), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test["label"]), [100] * 10)


def test_mnist5k_matches_csv_and_splits_are_disjoint(data_dir):
  images, labels = embedded.read_mnist5k_csv()
  rows = {}
  for split in ("train", "test"):
    arrays = data.load_arrays("mnist5k", split, data_dir=data_dir)
    # Every stored image is a CSV row with the same label.
    flat_csv = images.reshape(len(images), -1)
    lookup = {flat_csv[i].tobytes(): i for i in range(len(flat_csv))}
    stored = np.round(arrays["image"] * 255).astype(np.uint8)
    idx = [lookup[x.tobytes()] for x in stored.reshape(len(stored), -1)]
    np.testing.assert_array_equal(labels[idx], arrays["label"])
    rows[split] = set(idx)
  assert len(rows["train"]) == 4000 and len(rows["test"]) == 1000
  assert not rows["train"] & rows["test"]


def test_stratified_split_is_deterministic():
  _, labels = embedded.read_mnist5k_csv()
  a = embedded.stratified_split(labels)
  b = embedded.stratified_split(labels)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_data_source_is_an_array_record_source_without_tensorflow(data_dir):
  source = data.data_source("mnist5k", "test", data_dir=data_dir)
  assert len(source) == 1000
  example = source[7]
  assert example["image"].shape == (28, 28, 1)
  assert example["image"].dtype == np.uint8
  files = [p.name for p in embedded.Mnist5k(data_dir=data_dir).data_path.iterdir()]
  assert "mnist5k-test.array_record-00000-of-00001" in files
  assert "tensorflow" not in sys.modules


_PREPARE_AND_COUNT = (
    "import sys; from mi_jax.data import loader; "
    "print(len(loader.load_arrays('mnist5k', 'train', data_dir=sys.argv[1])"
    "['label']))")


def test_concurrent_preparation_is_safe(tmp_path):
  procs = [subprocess.Popen([sys.executable, "-c", _PREPARE_AND_COUNT,
                             str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=120)[0].split() for p in procs]
  assert [p.returncode for p in procs] == [0, 0]
  assert [out[-1] for out in outs] == ["4000", "4000"]


def test_unknown_name_is_a_clear_error(data_dir):
  with pytest.raises(ValueError, match="Unknown data set 'no_such_data'"):
    data.load_arrays("no_such_data", "train", data_dir=data_dir)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match=r"tfds build cifar10 .*--file_format=array_record"):
    data.load_arrays("cifar10", "train", data_dir=str(tmp_path))


def test_data_not_in_array_record_format_is_a_clear_error(data_dir, tmp_path):
  embedded.prepare_mnist5k(data_dir)
  shutil.copytree(data_dir + "/mnist5k", tmp_path / "mnist5k")
  info = tmp_path / "mnist5k" / "1.0.0" / "dataset_info.json"
  info.write_text(info.read_text().replace('"fileFormat": "array_record"',
                                           '"fileFormat": "tfrecord"'))
  with pytest.raises(FileNotFoundError,
                     match=r"stored as tfrecord(.|\n)*convert_format"):
    data.load_arrays("mnist5k", "train", data_dir=str(tmp_path))


def test_nan_images_are_a_clear_error():
  examples = [{"image": np.full((2, 2, 1), np.nan, np.float32), "label": 0}]
  with pytest.raises(ValueError, match="NaN or inf"):
    loader.to_model_batch(examples)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_real_tfds_names_through_mock_data(name, shape, tmp_path):
  with tfds.testing.mock_data(num_examples=12,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    arrays = data.load_arrays(name, "train", data_dir=str(tmp_path))
    source = data.data_source(name, "test", data_dir=str(tmp_path))
    assert len(source) == 12
  assert arrays["image"].shape == (12,) + shape
  assert arrays["image"].dtype == np.float32
  assert 0.0 <= arrays["image"].min() and arrays["image"].max() <= 1.0
  assert arrays["label"].dtype == np.int32
  assert ((0 <= arrays["label"]) & (arrays["label"] < 10)).all()
