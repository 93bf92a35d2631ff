"""A toy method, defined outside the package, for the plug-in tests (tests/test_method_plugin.py).

InfoNCE between linear maps of correlated Gaussians: x ~ N(0, I_d),
y = rho x + sqrt(1 - rho^2) e, so I(x; y) = -d/2 log(1 - rho^2) nats.
Batches are dicts {"x", "y"} (no images); the evaluation is the linear
probe / kNN of sign(y_0) from f_x(x), beside the raw x (Bayes accuracy
1 - arccos(rho) / pi).
"""

import numpy as np
from flax import nnx

from mi_jax import bounds
from mi_jax.objectives import Evaluation, Method, split_batches


class ToyModel(nnx.Module):
  """scores_BxB = f_x(x) f_y(y)^T with linear f_x, f_y."""

  def __init__(self, dim: int, out: int, *, rngs: nnx.Rngs):
    self.fx = nnx.Linear(dim, out, rngs=rngs)
    self.fy = nnx.Linear(dim, out, rngs=rngs)

  def __call__(self, x_BxD, y_BxD):
    return self.fx(x_BxD) @ self.fy(y_BxD).T


def gaussian_pairs(n: int, dim: int, rho: float, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, dim)).astype(np.float32)
  noise = rng.standard_normal((n, dim)).astype(np.float32)
  return {"x": x, "y": (rho * x + np.sqrt(1 - rho**2) * noise).astype(np.float32)}


def loss_fn(model, batch, key):
  del key
  mi = bounds.infonce(model(batch["x"], batch["y"]))
  return -mi, {"mi": mi}


def build(config, *, seed: int) -> Method:
  t = config.toy
  train = gaussian_pairs(512, t.dim, t.rho, seed=1)
  test = gaussian_pairs(256, t.dim, t.rho, seed=2)
  evaluation = Evaluation(
      inputs={"train": train["x"], "test": test["x"]},
      labels={"train": (train["y"][:, 0] > 0).astype(np.int32),
              "test": (test["y"][:, 0] > 0).astype(np.int32)},
      features=lambda model, x: model.fx(x), raw_features=lambda x: x,
      chunk_size=100)

  def init_model(seed):
    return ToyModel(t.dim, t.out, rngs=nnx.Rngs(seed))

  return Method(model=init_model(seed), loss_fn=loss_fn, train_data=train,
                heldout_batches=split_batches(test, config.batch_size),
                evaluations=[evaluation], title="toy Gaussian pairs",
                init_model=init_model)
