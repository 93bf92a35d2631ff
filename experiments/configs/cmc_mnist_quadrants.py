"""CMC on full MNIST with 4 views, the image quadrants: core view vs full graph.

Tian, Krishnan, Isola 2019 with any number of views: each 14x14 quadrant has
its own small ConvNet (3x3 convs, 16/32 channels, LayerNorm, pooled, 64-d
unit-norm code), temperature 0.1, InfoNCE over the global batch (in-batch
negatives; `--config.cmc.memory_bank=True` for a 60,000-entry memory bank).
`graph="core"`: the top-left quadrant is contrasted with each other one;
`--config.cmc.graph=full`: all 6 pairs. Evaluation: linear probe of the digit
on the 4 concatenated codes, beside raw pixels and randomly initialised
encoders; probe trained on the first 10,000 training images.

  mi-jax train --config experiments/configs/cmc_mnist_quadrants.py --workdir /tmp/mi_jax/cmc_core
  mi-jax train --config experiments/configs/cmc_mnist_quadrants.py --workdir /tmp/mi_jax/cmc_full --config.cmc.graph=full
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "cmc"
  c.dataset = "mnist"
  c.data_dir = config_dict.placeholder(str)
  c.datasets_dir = config_dict.placeholder(str)
  c.probe_train_split = "train[:10000]"
  c.probe_test_split = "test"
  c.heldout_examples = 2048   # held-out bound on the first 2,048 test images
  c.cmc = ml_collections.ConfigDict(dict(
      views="quadrants", graph="core", temperature=0.1, memory_bank=False,
      num_negatives=4096, momentum=0.5, positive="bank",
      encoders=dict(name="convnet",
                    kwargs=dict(channels=16, kernel_size=3, out_dim=64))))
  c.batch_size = 128
  c.lr = 1e-3
  c.grad_clip = 0.0
  c.steps = 1000
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True
  c.log_every = 50
  c.eval_every = 500
  c.probe_every = 100000
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=500, knn_k=5, random_baseline=True))
  c.progress_bar = False
  return c
