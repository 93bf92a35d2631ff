"""CMC L <-> ab on STL-10 (for users who have STL-10): the CIFAR-10 config on STL-10.

Tian, Krishnan, Isola 2020 train STL-10 on the 100,000 `unlabelled` images
and probe on `train` (5,000) / `test` (8,000). Everything else (two half-width
ResNet-18s, 128-d codes, temperature 0.07, memory bank with momentum 0.5,
16,384 negatives, batch 256) is `cmc_cifar10_lab.py`, including its listed
differences from the paper (no crop / flip augmentation, Adam). The bank has
100,000 entries and the unlabelled images are held in memory as float32
(about 11 GB). Not run here: STL-10 is not in ../shared/data.

  mi-jax train --config experiments/configs/cmc_stl10_lab.py \
      --workdir /tmp/mi_jax/cmc_stl10 --config.data_dir=/path/to/tfds
"""

import os

import ml_collections

from mi_jax.training.config import load_config


def get_config() -> ml_collections.ConfigDict:
  c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "cmc_cifar10_lab.py"))
  c.dataset = "stl10"
  c.train_split = "unlabelled"
  c.steps = 93750        # 240 epochs of 100,000 images
  return c
