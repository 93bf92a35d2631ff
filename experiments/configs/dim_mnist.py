"""Deep InfoMax on full MNIST (60k / 10k): DIM(G), DIM(L), DIM(L+G), with or without the prior.

The argument picks the variant, tokens joined by commas:
  G | L | LG        the objective: (alpha, beta, gamma) = (1, 0, 1) for
                    DIM(G) and (0, 1, 0.1) for DIM(L), as the paper;
                    (0.5, 1, 0.1) for DIM(L+G) (our choice)
  noprior           gamma = 0
  jsd | dv | nce    the estimator (default jsd)
  minimax           the paper's minimax encoder loss for the prior (no GP)
  plain             our former local critic (no BN / LayerNorm), an ablation
  occlusion         Y from the image with one random 14x14 block zeroed,
                    local features from the whole image (DIM(L) augmentation)

  mi-jax train --config experiments/configs/dim_mnist.py:L --workdir /tmp/mi_jax/dim_mnist_L
  mi-jax train --config experiments/configs/dim_mnist.py:G,noprior --workdir /tmp/mi_jax/dim_mnist_G0
  mi-jax train --config experiments/configs/dim_mnist.py:L,nce,occlusion --workdir /tmp/mi_jax/dim_mnist_Locc

Encoder reduced for CPU (the paper's MNIST encoder: conv 64-128 5x5/2, fc
1024, Y 64, 2048-unit critics): conv 16-32-64 4x4/2, fc 128, Y 64, local map
7x7x32, critic width 64, prior discriminator 1000-200 as the paper. Adam 1e-3
(paper 1e-4) for a short run; batch 64. The final evaluation adds DIM's
reference MLP probe (`config.mlp_ref`) and I(X; Y), NDM and the prior
statistics (`config.suite`), beside a random-init encoder.
The multi-seed tables of docs/dim.md were made with the same model by
experiments/dim/full_mnist.py (3 seeds in one vmapped program).
"""

import ml_collections
from ml_collections import config_dict

_WEIGHTS = {"G": (1.0, 0.0, 1.0), "L": (0.0, 1.0, 0.1), "LG": (0.5, 1.0, 0.1)}
_ESTIMATORS = {"jsd": "jsd", "dv": "dv", "nce": "infonce"}


def get_config(arg: str = "L") -> ml_collections.ConfigDict:
  """DIM on full MNIST; `arg` as in the module docstring."""
  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  if not tokens or tokens[0] not in _WEIGHTS:
    raise ValueError(f"the first token must be one of {sorted(_WEIGHTS)}, "
                     f"got {arg!r}")
  known = {"noprior", "minimax", "plain", "occlusion", *_ESTIMATORS}
  unknown = [t for t in tokens[1:] if t not in known]
  if unknown:
    raise ValueError(f"unknown tokens {unknown}; known: {sorted(known)}")
  alpha, beta, gamma = _WEIGHTS[tokens[0]]
  if "noprior" in tokens:
    gamma = 0.0
  estimator = next((_ESTIMATORS[t] for t in tokens if t in _ESTIMATORS), "jsd")

  c = ml_collections.ConfigDict()
  c.dataset = "mnist"
  c.data_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.probe_train_split = "train"
  c.probe_test_split = "test"
  c.streaming = False

  c.method = "dim"  # mi_jax.objectives.dim.build.
  c.dim = ml_collections.ConfigDict(dict(
      estimator=estimator, alpha=alpha, beta=beta, gamma=gamma,
      prior_encoder_loss="minimax" if "minimax" in tokens else "non_saturating",
      prior_gp=0.0 if "minimax" in tokens else 1.0,
      occlusion=14 if "occlusion" in tokens else 0,
      local_contrast="locations",
      crop_size=config_dict.placeholder(int), flip=False))
  c.encoder = ml_collections.ConfigDict(dict(name="dim_conv", kwargs=dict(
      channels=(16, 32, 64), fc_dim=128, code_dim=64, local_layer=1,
      image_size=28)))
  c.critic = ml_collections.ConfigDict(dict(
      local_critic="plain" if "plain" in tokens else "reference",
      local_embed_dim=64, local_hidden_dim=64, local_score_scale=1.0,
      global_conv_channels=(32, 16), global_hidden_dims=(128, 128),
      prior_hidden_dims=(1000, 200)))

  c.batch_size = 64
  c.lr = 1e-3
  c.grad_clip = 0.0
  c.steps = 400
  c.seed = 0
  c.compute_dtype = "float32"
  c.use_mesh = True

  c.log_every = 50
  c.eval_every = 400
  c.probe_every = 400
  c.checkpoint_every = 200
  c.keep_checkpoints = 2
  c.probe = ml_collections.ConfigDict(dict(
      C=10.0, steps=500, knn_k=5, mlp=False, random_baseline=True))
  c.mlp_ref = ml_collections.ConfigDict(dict(epochs=10, random_baseline=True))
  c.suite = ml_collections.ConfigDict(dict(estimator_steps=500,
                                           random_baseline=True))
  c.progress_bar = False
  return c
