"""DIM(L) on STL-10 with the paper's settings (Hjelm et al., ICLR 2019, Sec. 4).

Unsupervised training on the 100k `unlabelled` split, read with random access
(TFDS ArrayRecord source, not loaded into memory), random 64x64 crops of the
96x96 images and horizontal flips; the 64x64 encoder (conv 64-128-256-512, 4x4
stride 2, BN, ReLU -> fc 1024 -> Y 64), local map = the 256-channel 8x8 map;
DIM(L) alpha=0, beta=1, gamma=0.1; batch 64; Adam 1e-4. Probes on the labelled
`train` (5k) / `test` (8k) splits, centre-cropped to 64x64. Everything else is
`dim_cifar10.py`. Runs under the generic trainer (`config.method = "dim"`,
options under `config.dim`); running the same command again resumes.

The paper's 64x64 encoder is described for Tiny ImageNet / STL-10; this 4-conv
DCGAN-style variant follows the same pattern (our reading, not checked
layer-by-layer against the paper's appendix).

Needs STL-10 prepared as TFDS ArrayRecord (mi_jax never downloads):

  mi-jax train --config experiments/configs/dim_stl10.py \
      --workdir /tmp/mi_jax/dim_stl10 --config.data_dir=/path/to/tfds
"""

import os

import ml_collections

from mi_jax.training.config import load_config


def get_config(estimator: str = "infonce") -> ml_collections.ConfigDict:
  """DIM(L) on STL-10 (64x64 crops): the CIFAR-10 config with the 64x64 encoder."""
  base = os.path.join(os.path.dirname(__file__), "dim_cifar10.py")
  c = load_config(f"{base}:{estimator}")
  c.dataset = "stl10"
  c.train_split = "unlabelled"
  c.streaming = True
  c.dim.crop_size = 64
  c.dim.flip = True
  c.encoder.kwargs.channels = (64, 128, 256, 512)
  c.encoder.kwargs.local_layer = 2
  c.encoder.kwargs.image_size = 64
  return c
