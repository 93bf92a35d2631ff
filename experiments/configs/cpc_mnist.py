"""CPC on full MNIST: a 7x7 grid of 8x8 patches (stride 4), rows predicted 1..3 ahead.

van den Oord et al. 2018 / Hénaff et al. 2019 on images, scaled down for a
CPU: each patch is encoded by a small ConvNet (3x3 convs, 16/32 channels,
LayerNorm, pooled, 64-d z; the papers use ResNets on 64-px patches), a
row-causal (PixelCNN-style) context network (2 residual 3x3 layers, 64
channels) and one linear head W_k per offset k = 1..3. InfoNCE negatives are
every other patch of every image of the global batch. Evaluation: linear
probe of the digit on pooled context features (and pooled z), beside raw
pixels and a randomly initialised model of the same architecture; the probe
trains on the first 10,000 training images and tests on the 10,000 test
images.

  mi-jax train --config experiments/configs/cpc_mnist.py --workdir /tmp/mi_jax/cpc_mnist
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "cpc"
  c.dataset = "mnist"        # full MNIST from ../shared/data (60k / 10k)
  c.data_dir = config_dict.placeholder(str)
  c.datasets_dir = config_dict.placeholder(str)   # default ../shared/data
  c.probe_train_split = "train[:10000]"
  c.probe_test_split = "test"
  c.heldout_examples = 2048   # held-out bound on the first 2,048 test images
  c.cpc = ml_collections.ConfigDict(dict(
      patch_size=8, patch_stride=4, num_offsets=3,
      encoder=dict(name="convnet",
                   kwargs=dict(channels=16, kernel_size=3, out_dim=64)),
      context=dict(name="row_causal_context",
                   kwargs=dict(hidden=64, layers=2, kernel=3))))
  c.batch_size = 32
  c.lr = 2e-3
  c.grad_clip = 0.0
  c.steps = 1000
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True
  c.log_every = 50
  c.eval_every = 500
  c.probe_every = 100000     # probe at the end only
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=500, knn_k=5, random_baseline=True))
  c.progress_bar = False
  return c
