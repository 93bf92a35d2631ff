"""DIM(L) on the embedded MNIST-5k subset: the offline Deep InfoMax config (CPU, minutes).

A narrow version of the paper's conv encoder (conv 32-64-128, 4x4 stride 2, BN,
ReLU -> fc 256 -> Y 64) on 28x28x1 images; the local map is the 7x7x64 output
of the second conv (M = 49 locations). DIM(L) weights as in the paper
(alpha=0, beta=1, gamma=0.1), InfoNCE, batch 64; Adam 1e-3 (the paper's 1e-4
is too slow for a few-minute run). Runs under the generic trainer
(`config.method = "dim"`, DIM's options under `config.dim`); at the end:
linear and MLP probes on the conv / fc / Y features, beside the same probes
on a randomly initialised encoder (BatchNorm statistics calibrated on the
training images):

  mi-jax train --config experiments/configs/dim_mnist5k.py --workdir /tmp/mi_jax/dim_mnist5k

Running the same command again resumes. Override any field, e.g.
--config.dim.estimator=jsd --config.steps=500.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """DIM(L), InfoNCE, small encoder, mnist5k."""
  c = ml_collections.ConfigDict()
  c.dataset = "mnist5k"
  c.data_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.probe_train_split = "train"
  c.probe_test_split = "test"
  c.streaming = False  # True: read train_split by random access (large sets)

  c.method = "dim"  # mi_jax.objectives.dim.build.
  c.dim = ml_collections.ConfigDict(dict(
      estimator="infonce", alpha=0.0, beta=1.0, gamma=0.1,
      prior_encoder_loss="non_saturating",  # or "minimax" (paper eq. 7)
      prior_gp=1.0,  # D gradient penalty on prior + code batches (rdevon/DIM)
      occlusion=0,  # >0: Y from images with one such block zeroed
      local_contrast="codes",  # InfoNCE over codes; "locations": paper
      crop_size=config_dict.placeholder(int),  # random crops (STL-10: 64)
      flip=False))
  c.encoder = ml_collections.ConfigDict(dict(name="dim_conv", kwargs=dict(
      channels=(32, 64, 128), fc_dim=256, code_dim=64, local_layer=1,
      image_size=28)))
  c.critic = ml_collections.ConfigDict(dict(
      local_embed_dim=256, local_hidden_dim=256, local_score_scale=1.0,
      global_conv_channels=(64, 32), global_hidden_dims=(256, 256),
      prior_hidden_dims=(256, 64)))

  c.batch_size = 64
  c.lr = 1e-3
  c.grad_clip = 0.0
  c.steps = 1500
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True  # shard the batch over all devices when there are > 1
  c.mesh_shape = (-1,)  # or (-1, k): 'data' x 'model' (docs/training.md)
  c.param_sharding = "replicated"  # or "fsdp": params + optimizer sharded
  c.fsdp_min_size = 4096
  c.input = "auto"  # "device" / "prefetch" / "host" (docs/training.md)
  # Device input: steps per compiled call, in a lax.scan (the conv layers'
  # gradients run as fast in a loop as outside since encoders.conv_op).
  c.steps_per_call = 10
  c.device_data_max_mb = 1024

  c.log_every = 100
  c.eval_every = 500  # local bound on the held-out test split
  c.probe_every = 1500  # linear probes on conv / fc / Y
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  # Linear probe: scikit-learn's LogisticRegression(C) on min-max scaled
  # features; MLP probe: 200 hidden units, dropout 0.5 (final evaluation);
  # random_baseline: the same probes on a random encoder (seed + 1000).
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=1000, knn_k=5, mlp=True, mlp_hidden=200, mlp_dropout=0.5,
      mlp_epochs=50, random_baseline=True))
  c.progress_bar = True
  return c
