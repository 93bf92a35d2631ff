"""Data: the embedded `mnist5k` TFDS dataset, one TFDS loader, batch iterators.

Public names:
  load_arrays(name, split, *, data_dir=None) -> {"image", "label"} NumPy arrays
  data_source(name, split, data_dir=None) -> random-access TFDS source
  BatchIterator(data, batch_size, *, seed, ...) -> deterministic host-sharded
    batches with get_state() / set_state()
  prepare_mnist5k(data_dir=None), default_data_dir()
  prepare_mnist(data_dir=None, datasets_dir=None): full MNIST from IDX files
  load_fsdd(split, *, datasets_dir=None, max_len=8192): spoken digits, padded
  datasets_dir(override=None), require_file(relpath, override=None): the
    folder of real offline data sets (../shared/data) and clear errors
  load_planetoid, planetoid_batch, load_tu, TUDataset, Budget, budget_for,
    pad_graphs, ordered_batches, GraphBatchIterator: graph data (graphs.py)
"""
from mi_jax.data.embedded import default_data_dir
from mi_jax.data.embedded import prepare_mnist5k
from mi_jax.data.graphs import Budget
from mi_jax.data.graphs import GraphBatchIterator
from mi_jax.data.graphs import TUDataset
from mi_jax.data.graphs import budget_for
from mi_jax.data.graphs import load_planetoid
from mi_jax.data.graphs import load_tu
from mi_jax.data.graphs import ordered_batches
from mi_jax.data.graphs import pad_graphs
from mi_jax.data.graphs import planetoid_batch
from mi_jax.data.iterator import BatchIterator
from mi_jax.data.loader import data_source
from mi_jax.data.loader import load_arrays
from mi_jax.data.loader import to_model_batch
from mi_jax.data.mnist import prepare_mnist
from mi_jax.data.shared import datasets_dir
from mi_jax.data.shared import require as require_file
from mi_jax.data.fsdd import load_fsdd
