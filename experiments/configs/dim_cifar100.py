"""DIM(L) on CIFAR-100 with the paper's settings (Hjelm et al., ICLR 2019, Table 1).

Identical to `dim_cifar10.py` (the paper uses the same encoder and
hyperparameters) but for the data set. Needs CIFAR-100 prepared as TFDS
ArrayRecord (`tfds build cifar100 --file_format=array_record`; mi_jax never
downloads). Estimator as the argument: infonce (default), jsd or dv:

  mi-jax train --config experiments/configs/dim_cifar100.py:jsd \
      --workdir /tmp/mi_jax/dim_cifar100_jsd --config.data_dir=/path/to/tfds
"""

import os

import ml_collections

from mi_jax.training.config import load_config


def get_config(estimator: str = "infonce") -> ml_collections.ConfigDict:
  """DIM(L) on CIFAR-100: the CIFAR-10 config with `dataset = "cifar100"`."""
  base = os.path.join(os.path.dirname(__file__), "dim_cifar10.py")
  c = load_config(f"{base}:{estimator}")
  c.dataset = "cifar100"
  return c
