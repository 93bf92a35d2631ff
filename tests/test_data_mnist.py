"""Full MNIST from the data sets folder (../shared/data/mnist), and its errors."""
import gzip
import os

import numpy as np
import pytest

from mi_jax import data
from mi_jax.data import mnist, shared

# Counts from ../shared/data/README.md (section 1, "Measured").
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    not shared.available(mnist.FILES["train"][0]),
    reason="the data sets folder (../shared/data or $MI_JAX_DATASETS_DIR) has "
           "no mnist/ IDX files")


@needs_mnist
def test_mnist_idx_matches_the_data_readme():
  images, labels = mnist.read_split("train")
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert np.bincount(labels).tolist() == TRAIN_COUNTS
  assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
  assert abs(images.mean() / 255 - 0.130660) < 1e-6
  _, test_labels = mnist.read_split("test")
  assert np.bincount(test_labels).tolist() == TEST_COUNTS


@needs_mnist
def test_mnist_tfds_arrays_keep_order_and_counts(tmp_path):
  test = data.load_arrays("mnist", "test", data_dir=str(tmp_path))
  assert test["image"].shape == (10000, 28, 28, 1)
  assert test["image"].dtype == np.float32 and test["image"].max() == 1.0
  assert np.bincount(test["label"]).tolist() == TEST_COUNTS
  _, idx_labels = mnist.read_split("test")
  np.testing.assert_array_equal(test["label"], idx_labels)


def test_missing_datasets_dir_names_the_file(tmp_path, monkeypatch):
  monkeypatch.setenv(shared.ENV_VAR, str(tmp_path))
  with pytest.raises(FileNotFoundError, match="mnist/train-images-idx3-ubyte.gz"):
    mnist.read_split("train")


def test_truncated_idx_file_is_named(tmp_path):
  path = tmp_path / "bad.gz"
  header = (2051).to_bytes(4, "big") + b"".join(
      n.to_bytes(4, "big") for n in (10, 28, 28))
  with gzip.open(path, "wb") as f:
    f.write(header + bytes(100))
  with pytest.raises(ValueError, match="bad.gz.*truncated"):
    mnist.read_idx(os.fspath(path))
