"""CPC on spoken digits (FSDD, 8 kHz): strided conv encoder + GRU, 1..12 steps ahead.

van den Oord et al. 2018, §3.1, scaled down for a CPU: the paper's encoder
(kernels 10, 8, 4, 4, 4; strides 5, 4, 2, 2, 2: one z per 160 samples = 20 ms
at 8 kHz) with 64 channels instead of 512, a GRU context of 64 instead of 256,
predictions 1..12 steps ahead, random 2,560-sample (0.32 s, 16-frame) crops
instead of 20,480 (the recordings' median length is 3,358 samples).
Negatives: every other frame of the same and the other crops in the batch.
Evaluation on whole recordings (test = takes 0-4): linear probes of the
speaker (6-way) and the digit (10-way) on pooled context features (and pooled
z), beside pooled log-mel features and a randomly initialised model.

  mi-jax train --config experiments/configs/cpc_fsdd.py --workdir /tmp/mi_jax/cpc_fsdd
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "cpc"
  c.dataset = "fsdd"
  c.datasets_dir = config_dict.placeholder(str)   # default ../shared/data
  c.fsdd = ml_collections.ConfigDict(dict(max_len=8192))
  c.cpc = ml_collections.ConfigDict(dict(
      num_offsets=12, crop=2560,
      encoder=dict(name="conv1d", kwargs=dict(channels=64, out_dim=64)),
      context=dict(name="gru_context", kwargs=dict(hidden=64))))
  c.batch_size = 16
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
  probe = dict(C=10.0, steps=500, knn_k=5, random_baseline=True)
  c.speaker = ml_collections.ConfigDict(probe)
  c.digit = ml_collections.ConfigDict(probe)
  c.progress_bar = False
  return c
