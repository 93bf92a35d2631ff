"""DIM(L) on CIFAR-10 with the paper's settings (Hjelm et al., ICLR 2019, Table 1).

The 32x32 encoder (conv 64-128-256, 4x4 stride 2, BN, ReLU -> fc 1024 -> Y 64),
local map = the 128-channel 8x8 output of the second conv; encode-and-dot local
critic with 2048 units; DIM(L) weights alpha=0, beta=1, gamma=0.1 (uniform
prior on [0,1]^64 via the sigmoid of Y); batch 64; Adam 1e-4. Probes: linear
and a 200-unit one-hidden-layer MLP with dropout on conv / fc / Y. Runs under
the generic trainer (`config.method = "dim"`, options under `config.dim`);
running the same command again resumes.

Needs CIFAR-10 prepared as TFDS ArrayRecord (`tfds build cifar10
--file_format=array_record`; mi_jax never downloads). Estimator as the
argument: infonce (default), jsd or dv:

  mi-jax train --config experiments/configs/dim_cifar10.py:jsd \
      --workdir /tmp/mi_jax/dim_cifar10_jsd --config.data_dir=/path/to/tfds

`steps` (200k, about 256 epochs) is our choice, not taken from the paper.
"""

import ml_collections
from ml_collections import config_dict


def get_config(estimator: str = "infonce") -> ml_collections.ConfigDict:
  """DIM(L) on CIFAR-10, the paper's encoder and hyperparameters."""
  c = ml_collections.ConfigDict()
  c.dataset = "cifar10"
  c.data_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.probe_train_split = "train"
  c.probe_test_split = "test"
  c.streaming = False

  c.method = "dim"  # mi_jax.objectives.dim.build.
  c.dim = ml_collections.ConfigDict(dict(
      estimator=estimator, alpha=0.0, beta=1.0, gamma=0.1,
      prior_encoder_loss="non_saturating", prior_gp=1.0,  # as rdevon/DIM
      occlusion=0, local_contrast="locations",
      crop_size=config_dict.placeholder(int), flip=False))
  c.encoder = ml_collections.ConfigDict(dict(name="dim_conv", kwargs=dict(
      channels=(64, 128, 256), fc_dim=1024, code_dim=64, local_layer=1,
      image_size=32, in_channels=3)))
  c.critic = ml_collections.ConfigDict(dict(
      local_embed_dim=2048, local_hidden_dim=2048, local_score_scale=1.0,
      global_conv_channels=(64, 32), global_hidden_dims=(512, 512),
      prior_hidden_dims=(1000, 200)))

  c.batch_size = 64
  c.lr = 1e-4
  c.steps = 200_000
  c.grad_clip = 0.0
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True
  c.log_every = 500
  c.checkpoint_every = 5000

  c.eval_every = 5000  # local bound on the held-out test split
  c.probe_every = 50_000  # linear probes on conv / fc / Y
  c.keep_checkpoints = 2
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=1000, knn_k=5, mlp=True, mlp_hidden=200, mlp_dropout=0.5,
      mlp_epochs=50, random_baseline=True))
  c.progress_bar = True
  return c
