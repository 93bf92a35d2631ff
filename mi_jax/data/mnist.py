"""Full MNIST (60,000 / 10,000) from the standard gzip IDX files, as TFDS ArrayRecord.

The four files `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` sit in the
data sets folder (`mnist/` under `mi_jax.data.shared.datasets_dir()`, i.e.
`../shared/data/mnist/` by default). `prepare_mnist(data_dir)` writes them
once as a TFDS data set named `mnist` in ArrayRecord format with
`tfds.features.Tensor` images (no TensorFlow, no download), under the same
TFDS folder and file lock as the embedded `mnist5k`. Its version (1.0.0) is
not the official TFDS `mnist` (3.0.1), so a standard `mnist` prepared on a
machine with internet can sit beside it; `load_arrays("mnist", ...)` reads
this one when the IDX files (or its prepared copy) are there and falls back
to the standard one otherwise.
"""
import gzip
import os
import struct

import numpy as np
import tensorflow_datasets as tfds

from mi_jax.data import embedded
from mi_jax.data import shared

NAME = "mnist"
VERSION = "1.0.0"
FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str) -> np.ndarray:
  """One gzip IDX file -> uint8 array ([N, rows, cols] images or [N] labels).

  Raises:
    ValueError: a bad magic number or a payload of the wrong size (names the file).
  """
  with gzip.open(path, "rb") as f:
    data = f.read()
  magic = struct.unpack(">I", data[:4])[0]
  if magic not in (2049, 2051):
    raise ValueError(f"{path}: IDX magic {magic}, expected 2049 (labels) or "
                     "2051 (images); is it a gzip IDX file?")
  ndim = magic - 2048
  shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if payload.size != int(np.prod(shape)):
    raise ValueError(f"{path}: header says shape {shape} but the payload holds "
                     f"{payload.size} bytes (truncated file?)")
  return payload.reshape(shape)


def read_split(split: str, datasets_dir=None):
  """(images_Nx28x28x1 uint8, labels_N int64) of `split` ("train" / "test")."""
  images_path, labels_path = (shared.require(p, datasets_dir) for p in FILES[split])
  images, labels = read_idx(images_path), read_idx(labels_path)
  if len(images) != len(labels):
    raise ValueError(f"{images_path} has {len(images)} images but "
                     f"{labels_path} has {len(labels)} labels")
  return images[..., None], labels.astype(np.int64)


class MnistIdx(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """MNIST from the IDX files of the data sets folder, as TFDS `mnist` 1.0.0."""

  name = NAME
  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {"1.0.0": "Standard IDX files; Tensor features (no TF)."}

  def __init__(self, *, datasets_dir=None, **kwargs):
    self._datasets_dir = datasets_dir
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """No code folder (no checksums file): the data come from local files."""
    return None

  def _info(self):
    return self.dataset_info_from_configs(
        description="MNIST (LeCun et al.), 60,000 train / 10,000 test, from IDX files.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="http://yann.lecun.com/exdb/mnist/",
        disable_shuffling=True,  # Keep the IDX order (first labels 5 0 4 1 9).
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: local IDX files.
    return {split: self._generate_examples(split) for split in FILES}

  def _generate_examples(self, split):
    images, labels = read_split(split, self._datasets_dir)
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}


def is_prepared(data_dir=None) -> bool:
  """Whether the IDX-built `mnist` is already written under `data_dir`."""
  data_dir = os.fspath(data_dir or embedded.default_data_dir())
  return MnistIdx(data_dir=data_dir).is_prepared()


def prepare_mnist(data_dir=None, datasets_dir=None) -> str:
  """Writes `mnist` 1.0.0 as ArrayRecord under `data_dir` once; returns data_dir.

  Reads the IDX files from `datasets_dir` (see `mi_jax.data.shared`); safe when
  several processes call it at once (file lock).
  """
  data_dir = os.fspath(data_dir or embedded.default_data_dir())
  if MnistIdx(data_dir=data_dir).is_prepared():
    return data_dir
  for split in FILES:  # Fail before taking the lock, naming the file.
    for relpath in FILES[split]:
      shared.require(relpath, datasets_dir)
  os.makedirs(data_dir, exist_ok=True)
  with embedded.file_lock(os.path.join(data_dir, f".{NAME}.lock")):
    builder = MnistIdx(data_dir=data_dir, file_format="array_record",
                       datasets_dir=datasets_dir)
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return data_dir


def data_source(split: str, data_dir=None, datasets_dir=None):
  """Random-access source of the IDX-built `mnist` (prepared on first use)."""
  data_dir = prepare_mnist(data_dir, datasets_dir)
  return MnistIdx(data_dir=data_dir).as_data_source(split=split)
