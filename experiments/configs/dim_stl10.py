"""DIM(L) on STL-10 with the paper's settings (Hjelm et al., ICLR 2019, Sec. 4).

Unsupervised training on the 100k `unlabelled` split, read with random access
(TFDS ArrayRecord source, not loaded into memory), random 64x64 crops of the
96x96 images and horizontal flips; the 64x64 encoder (conv 64-128-256-512, 4x4
stride 2, BN, ReLU -> fc 1024 -> Y 64), local map = the 256-channel 8x8 map;
DIM(L) alpha=0, beta=1, gamma=0.1; batch 64; Adam 1e-4. Probes on the labelled
`train` (5k) / `test` (8k) splits, centre-cropped to 64x64. Runs under the
generic trainer (`config.objective = "dim"`, options under `config.dim`);
running the same command again resumes.

The paper's 64x64 encoder is described for Tiny ImageNet / STL-10; this 4-conv
DCGAN-style variant follows the same pattern (our reading, not checked
layer-by-layer against the paper's appendix).

Needs STL-10 prepared as TFDS ArrayRecord (mi_jax never downloads):

  mi-jax train --config experiments/configs/dim_stl10.py \
      --workdir /tmp/mi_jax/dim_stl10 --config.data_dir=/path/to/tfds
"""

import ml_collections
from ml_collections import config_dict


def get_config(estimator: str = "infonce") -> ml_collections.ConfigDict:
  """DIM(L) on STL-10 (64x64 crops), the paper's hyperparameters."""
  c = ml_collections.ConfigDict()
  c.dataset = "stl10"
  c.data_dir = config_dict.placeholder(str)
  c.train_split = "unlabelled"
  c.probe_train_split = "train"
  c.probe_test_split = "test"
  c.streaming = True

  c.objective = "dim"  # See mi_jax.training.experiment.build_dim.
  c.dim = ml_collections.ConfigDict(dict(
      estimator=estimator, alpha=0.0, beta=1.0, gamma=0.1,
      prior_encoder_loss="minimax", local_contrast="locations",
      crop_size=64, flip=True))
  c.encoder = ml_collections.ConfigDict(dict(name="dim_conv", kwargs=dict(
      channels=(64, 128, 256, 512), fc_dim=1024, code_dim=64, local_layer=2,
      image_size=64, in_channels=3)))
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
