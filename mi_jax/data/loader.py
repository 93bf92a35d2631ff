"""One loader for any TFDS data set: random-access sources and NumPy arrays.

  * `data_source(name, split, data_dir=None)`: a TFDS random-access source
    (`tfds.data_source`, ArrayRecord, no TensorFlow) of already prepared data.
    Never downloads: a missing data set raises `FileNotFoundError` saying how to
    prepare it. `mnist5k` (the embedded default) is prepared on first use.
  * `load_arrays(name, split, data_dir=None)`: the whole split as
    `{"image": float32 [N, H, W, C] in [0, 1], "label": int32 [N]}`.
  * `to_model_batch(examples)`: the conversion both use, from a list of TFDS
    examples to that dict.
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from mi_jax.data import embedded
from mi_jax.data import mnist
from mi_jax.data import shared

_HOW_TO_PREPARE = """\
On a machine with internet, prepare it in ArrayRecord format:

  pip install tensorflow-datasets tensorflow   # TF is needed only to build it
  tfds build {name} --data_dir=DIR --file_format=array_record
  # or: python -m tensorflow_datasets.scripts.download_and_prepare \\
  #       --datasets={name} --data_dir=DIR --file_format=array_record

then copy DIR/{name} to {data_dir}/{name} here, or point mi_jax at it with
`data_dir=DIR`, `$MI_JAX_DATA_DIR=DIR` or `--config.data_dir=DIR`."""

_NOT_PREPARED = """\
Data set {name!r} is not prepared in {data_dir} (mi_jax never downloads at
run time). """ + _HOW_TO_PREPARE

_NOT_ARRAY_RECORD = """\
Data set {name!r} in {path} is stored as {file_format}, which has no random
access without TensorFlow; mi_jax reads ArrayRecord. Convert it where
TensorFlow is installed:

  tfds convert_format --dataset_version_dir={path} \\
    --out_file_format=array_record --out_dir=NEW_DIR

or rebuild it. """ + _HOW_TO_PREPARE


def _resolve_data_dir(data_dir):
  return os.fspath(data_dir or embedded.default_data_dir())


def data_source(name: str, split: str, data_dir=None, datasets_dir=None):
  """A random-access TFDS source (`len`, `source[i] -> dict`) for one split.

  Args:
    name: a TFDS name (`mnist`, `cifar10`, ...) or `mnist5k`, the embedded
      5,000-image MNIST subset (prepared into `data_dir` on first use).
    split: a TFDS split string (`"train"`, `"test[:10%]"`, ...).
    data_dir: folder of prepared TFDS data; default `$MI_JAX_DATA_DIR` or
      `~/.cache/mi_jax/tensorflow_datasets`.
    datasets_dir: the folder of raw offline data sets (`../shared/data` by
      default, see `mi_jax.data.shared`); `mnist` is prepared from its IDX
      files there when they exist, else the standard TFDS `mnist` is read.

  Raises:
    ValueError: unknown data set name.
    FileNotFoundError: the data set is not prepared (the message says how).
  """
  data_dir = _resolve_data_dir(data_dir)
  if name == embedded.NAME:
    embedded.prepare_mnist5k(data_dir)
  if name == mnist.NAME and (
      mnist.is_prepared(data_dir)
      or shared.available(mnist.FILES["train"][0], datasets_dir)):
    return mnist.data_source(split, data_dir, datasets_dir)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir,
                            download=False, try_gcs=False)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f"Unknown data set {name!r}: neither {embedded.NAME!r} (the embedded "
        "default) nor a TFDS name (see `tfds.list_builders()`).") from e
  except Exception as e:  # TFDS reports unprepared data in several ways.
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception:  # pylint: disable=broad-except
      raise e from None
    if not builder.is_prepared():
      raise FileNotFoundError(
          _NOT_PREPARED.format(name=name, data_dir=data_dir)) from e
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
      raise FileNotFoundError(_NOT_ARRAY_RECORD.format(
          name=name, data_dir=data_dir, path=builder.data_dir,
          file_format=builder.info.file_format.value)) from e
    raise


def _supervised_keys(source):
  """(image key, label key) of a source: its supervised keys, else defaults."""
  info = getattr(source, "dataset_info", None)
  keys = getattr(info, "supervised_keys", None)
  if (isinstance(keys, tuple) and len(keys) == 2
      and all(isinstance(k, str) for k in keys)):
    return keys
  return "image", "label"


def _to_unit_float(images):
  """Integer images -> float32 in [0, 1] (divided by the dtype's max)."""
  images = np.asarray(images)
  if np.issubdtype(images.dtype, np.integer):
    return images.astype(np.float32) / np.float32(np.iinfo(images.dtype).max)
  return images.astype(np.float32)


def to_model_batch(examples, *, image_key="image", label_key="label"):
  """Stacks TFDS examples into `{"image": f32 [N,H,W,C], "label": i32 [N]}`.

  Integer images are scaled to [0, 1]; a 2-D image gets a channel axis.

  Raises:
    ValueError: no examples, or NaN / inf in the images.
  """
  if len(examples) == 0:
    raise ValueError("No examples to stack (empty split or batch).")
  images = _to_unit_float(np.stack([ex[image_key] for ex in examples]))
  if images.ndim == 3:
    images = images[..., None]
  if not np.isfinite(images).all():
    raise ValueError(
        f"The images hold {int(np.size(images) - np.isfinite(images).sum())} "
        "NaN or inf values.")
  labels = np.asarray([ex[label_key] for ex in examples]).astype(np.int32)
  return {"image": images, "label": labels.reshape(-1)}


def read_batch(source, indices):
  """`to_model_batch` of `source[i]` for `i` in `indices`."""
  image_key, label_key = _supervised_keys(source)
  examples = [source[int(i)] for i in indices]
  return to_model_batch(examples, image_key=image_key, label_key=label_key)


def load_arrays(name: str, split: str, *, data_dir=None, datasets_dir=None):
  """A whole split as `{"image": f32 [N,H,W,C] in [0,1], "label": i32 [N]}`.

  Same arguments and errors as `data_source`; NaN / inf -> ValueError.
  """
  source = data_source(name, split, data_dir=data_dir, datasets_dir=datasets_dir)
  return read_batch(source, range(len(source)))
