"""Where the real offline data sets live, and clear errors when they do not.

The project's real data (full MNIST as gzip IDX, Planetoid Cora / CiteSeer
as `.npz`, TU graph sets, the Free Spoken Digit Dataset) sit in a *data sets
folder* laid out as `../shared/data/` beside the repository:

  mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
  planetoid/{cora,citeseer}.npz
  tu/<NAME>/<NAME>.txt, tu/<NAME>/10fold_idx/{train,test}_idx-<k>.txt
  fsdd/fsdd.npz

`datasets_dir(override)` resolves that folder: the `override` argument (a
config's `datasets_dir` field), else `$MI_JAX_DATASETS_DIR`, else
`../shared/data` next to the repository (found from this file, then from the
working directory) when it exists. `require(relpath, override)` returns the
path of one file in it, or raises `FileNotFoundError` naming the file and the
three ways to point at the folder. Nothing is ever downloaded or copied.
"""
import os
import pathlib

ENV_VAR = "MI_JAX_DATASETS_DIR"


def _candidates():
  here = pathlib.Path(__file__).resolve()
  yield here.parents[2].parent / "shared" / "data"   # <repo>/../shared/data
  yield pathlib.Path.cwd().parent / "shared" / "data"
  yield pathlib.Path.cwd() / "shared" / "data"


def datasets_dir(override=None) -> str:
  """The data sets folder: `override`, `$MI_JAX_DATASETS_DIR`, or ../shared/data.

  Raises:
    FileNotFoundError: none is given and `../shared/data` does not exist.
  """
  if override:
    return os.fspath(override)
  if os.environ.get(ENV_VAR):
    return os.environ[ENV_VAR]
  for path in _candidates():
    if path.is_dir():
      return os.fspath(path)
  raise FileNotFoundError(
      "No data sets folder: ../shared/data does not exist beside the "
      f"repository. Point mi_jax at the folder that holds mnist/, planetoid/, "
      f"tu/ and fsdd/ with --config.datasets_dir=DIR or ${ENV_VAR}=DIR.")


def require(relpath: str, override=None) -> str:
  """The path of `relpath` inside the data sets folder; FileNotFoundError if absent."""
  root = datasets_dir(override)
  path = os.path.join(root, relpath)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"Missing data file {path} (expected {relpath} inside the data sets "
        f"folder {root}). Point mi_jax at a folder laid out like "
        f"../shared/data with --config.datasets_dir=DIR or ${ENV_VAR}=DIR; "
        "see ../shared/data/README.md for the files and their checksums.")
  return path


def available(relpath: str, override=None) -> bool:
  """Whether `relpath` exists in the data sets folder (False if there is none)."""
  try:
    require(relpath, override)
  except FileNotFoundError:
    return False
  return True
