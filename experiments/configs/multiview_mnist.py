"""The main job: multiview InfoMax on the embedded MNIST-5k, Tschannen et al. 2020 §3.2.

Two MLP encoders (392-300-300-100) on the top and bottom halves of each image,
a bilinear critic and the InfoNCE bound, Adam 1e-4, batch 128. At the end the
run prints the linear-probe accuracy of the learned features (the top-half
encoder's output) beside the same probe on the raw top-half pixels.

Run it (the workdir holds checkpoints, metrics.jsonl, TensorBoard events,
config.json and curves.png; running the same command again resumes):

  mi-jax train --config experiments/configs/multiview_mnist.py --workdir /tmp/mi_jax/multiview_mnist

Override any field from the command line, e.g.

  mi-jax train --config experiments/configs/multiview_mnist.py --workdir /tmp/mv2 \
      --config.bound.name=nwj --config.critic.name=separable --config.steps=2000
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The default multiview MNIST config."""
  c = ml_collections.ConfigDict()

  # Data: the embedded 5k MNIST subset (train 4,000 / test 1,000), no download.
  c.dataset = "mnist5k"
  c.data_dir = config_dict.placeholder(str)  # None: the library's cache dir.
  c.views = "top_bottom"
  c.noise_std = 0.0  # Gaussian noise added to each view (0: none).

  # Model: g1, g2 and the critic f(g1(x1), g2(x2)).
  c.method = "multiview"  # mi_jax.objectives.multiview.build (see docs/architecture.md).
  c.encoder = ml_collections.ConfigDict()
  c.encoder.name = "mlp"
  c.encoder.kwargs = ml_collections.ConfigDict(
      dict(hidden=(300, 300), out_dim=100))
  c.shared_encoder = False
  c.critic = ml_collections.ConfigDict(dict(name="bilinear", kwargs={}))
  # block_size > 0: memory-linear (blocked) infonce / dv / nwj, negatives
  # from the whole global batch on a mesh (needs a factorisable critic).
  c.bound = ml_collections.ConfigDict(dict(name="infonce", kwargs={},
                                           block_size=0))

  # Optimisation.
  c.batch_size = 128
  c.lr = 1e-4
  c.grad_clip = 0.0  # Global-norm clipping threshold (0: off).
  c.steps = 3000
  c.seed = 0
  c.compute_dtype = "float32"  # or "bfloat16" (bounds stay float32).
  c.use_mesh = True  # Shard the batch over all devices when there are > 1.
  # Scale (docs/training.md): the mesh, (-1,) = all devices on 'data', or
  # (-1, k) = 'data' x 'model'; parameters + optimizer state "replicated" or
  # "fsdp" (sharded over 'model', else 'data'; leaves >= fsdp_min_size).
  c.mesh_shape = (-1,)
  c.param_sharding = "replicated"
  c.fsdp_min_size = 4096
  # Input: "auto" (the data set on the device when <= device_data_max_mb,
  # batches gathered inside the compiled multi-step of up to steps_per_call
  # steps; else a background prefetch), "device", "prefetch" or "host".
  c.input = "auto"
  c.steps_per_call = 10
  c.device_data_max_mb = 1024

  # Logging, evaluation, checkpoints.
  c.log_every = 50
  c.eval_every = 500  # Bound on the held-out test split.
  c.probe_every = 1000  # Linear-probe accuracy of the features.
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  # Logistic regression as scikit-learn's LogisticRegression(C) on min-max
  # scaled features (Tschannen et al. use C = 10), L-BFGS for <= `steps`.
  c.probe = ml_collections.ConfigDict(dict(C=10.0, steps=1000, knn_k=5))
  c.progress_bar = True
  return c
