"""CMC on spoken digits: waveform vs its log-mel spectrogram, with a memory bank.

Two modalities of one recording (Tian, Krishnan, Isola 2019, with views of
different kinds): a random 2,560-sample crop (0.32 s at 8 kHz) encoded by the
CPC strided conv encoder (64 channels, pooled), and the log-mel spectrogram
of the same crop (32 ms Hann windows every 10 ms, 40 mel bands, computed in
JAX) encoded by a 1-D conv over time (kernels 3, 3, 3; strides 1, 2, 2;
pooled). Unit-norm 64-d codes, temperature 0.1, InfoNCE over the global
batch. `--config.cmc.memory_bank=True --config.cmc.temperature=0.07` uses a
memory bank of one entry per training recording (2,700), momentum 0.5, 1,024
negatives per step drawn without the sample's own entry (the bank positive of
the reference code). Evaluation: speaker (6-way) and digit
(10-way) probes on whole recordings (both codes concatenated), beside pooled
log-mel features and randomly initialised encoders.

  mi-jax train --config experiments/configs/cmc_fsdd.py --workdir /tmp/mi_jax/cmc_fsdd
  mi-jax train --config experiments/configs/cmc_fsdd.py --workdir /tmp/mi_jax/cmc_fsdd_bank \
      --config.cmc.memory_bank=True --config.cmc.temperature=0.07
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "cmc"
  c.dataset = "fsdd"
  c.datasets_dir = config_dict.placeholder(str)
  c.fsdd = ml_collections.ConfigDict(dict(max_len=8192))
  c.cmc = ml_collections.ConfigDict(dict(
      views="wave_logmel", graph="core", temperature=0.1, crop=2560,
      memory_bank=False, num_negatives=1024, momentum=0.5, positive="bank",
      encoders=[
          dict(name="conv1d", kwargs=dict(channels=64, out_dim=64, pool=True)),
          dict(name="conv1d", kwargs=dict(channels=64, out_dim=64, pool=True,
                                          kernels=(3, 3, 3),
                                          strides=(1, 2, 2)))]))
  c.batch_size = 32
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
