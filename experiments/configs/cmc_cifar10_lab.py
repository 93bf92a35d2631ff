"""CMC L <-> ab on CIFAR-10 with the reference settings (for users who have CIFAR-10).

Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020: the image
in L*a*b*, view 1 = L, view 2 = ab, one encoder per view (the paper splits a
network into two halves, one per view; here two ResNet-18s of half width,
32-64-128-256 channels, 128-d unit-norm codes), temperature 0.07, a memory
bank with one entry per training image, momentum 0.5, 16,384 negatives per
sample (the reference code's `nce_k`, `nce_t`, `nce_m` defaults), batch 256,
240 epochs. Differences: Adam instead of SGD (lr 0.03, momentum 0.9), no
random-resized-crop / flip augmentation, the softmax (InfoNCE) form of the
loss. As in the reference code the positive is the other view's bank entry
(`cmc.positive = "bank"`). Not run here:
CIFAR-10 is not in ../shared/data. The training images are held in memory
(the bank is indexed by row).

  mi-jax train --config experiments/configs/cmc_cifar10_lab.py \
      --workdir /tmp/mi_jax/cmc_cifar10 --config.data_dir=/path/to/tfds
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "cmc"
  c.dataset = "cifar10"
  c.data_dir = config_dict.placeholder(str)
  c.datasets_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.probe_train_split = "train"
  c.probe_test_split = "test"
  half_resnet18 = dict(name="resnet", kwargs=dict(
      stage_sizes=(2, 2, 2, 2), widths=(32, 64, 128, 256), out_dim=128))
  c.cmc = ml_collections.ConfigDict(dict(
      views="lab", graph="core", temperature=0.07, memory_bank=True,
      num_negatives=16384, momentum=0.5, positive="bank",
      encoders=half_resnet18))
  c.batch_size = 256
  c.lr = 1e-3
  c.grad_clip = 0.0
  c.steps = 46875        # 240 epochs of 50,000 images
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True
  c.log_every = 100
  c.eval_every = 5000
  c.probe_every = 10000
  c.checkpoint_every = 2000
  c.keep_checkpoints = 3
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=1000, knn_k=5, random_baseline=True))
  c.progress_bar = True
  return c
