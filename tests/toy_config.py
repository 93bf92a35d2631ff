"""Config of the toy method (tests/toy_method.py) for tests/test_method_plugin.py."""

import os

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "toy_method.py")
  c.toy = ml_collections.ConfigDict(dict(dim=2, out=8, rho=0.9))
  c.batch_size = 32
  c.lr = 3e-2
  c.steps = 20
  c.seed = 0
  c.use_mesh = False
  c.log_every = 5
  c.eval_every = 10
  c.probe_every = 20
  c.checkpoint_every = 10
  c.keep_checkpoints = 2
  c.probe = ml_collections.ConfigDict(dict(C=10.0, steps=200, knn_k=5,
                                           random_baseline=True))
  c.progress_bar = False
  return c
