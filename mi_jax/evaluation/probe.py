"""Probes on frozen features: linear (logistic regression), MLP, pixel baseline.

  * `linear_probe`: multinomial logistic regression fitted full-batch with
    L-BFGS (`optax.lbfgs`, zoom line search) under `jax.jit`; the objective is
    scikit-learn's, so `C` means what it means there.
  * `mlp_probe`: one hidden layer (200 ReLU units, dropout 0.5) trained with
    Adam on minibatches, the evaluation of Deep InfoMax (Hjelm et al. 2019).
  * `pixel_baseline_accuracy`: Tschannen et al. 2020's raw-pixel baseline,
    logistic regression on half of the pixels plus N(0, 0.05^2) noise.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mi_jax.evaluation import checks


def _num_classes(train_N, test_M):
  return int(max(train_N.max(), test_M.max())) + 1


def _accuracy(logits_MxK, labels_M):
  return float(np.mean(np.asarray(jnp.argmax(logits_MxK, -1)) == labels_M))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_logistic(x_NxD, y_N, inv_c_n, tol, *, num_classes, steps):
  """Minimises mean CE + inv_c_n / 2 * ||W||^2 with L-BFGS; returns params."""
  onehot_NxK = jax.nn.one_hot(y_N, num_classes)

  def loss(params):
    logits_NxK = x_NxD @ params["w"] + params["b"]
    ce = optax.softmax_cross_entropy(logits_NxK, onehot_NxK).mean()
    return ce + 0.5 * inv_c_n * jnp.sum(params["w"] ** 2)

  params = {"w": jnp.zeros((x_NxD.shape[1], num_classes), jnp.float32),
            "b": jnp.zeros((num_classes,), jnp.float32)}
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad,
                                value_fn=loss)
    return optax.apply_updates(params, updates), state

  def keep_going(carry):
    _, state = carry
    count = optax.tree.get(state, "count")
    grad = optax.tree.get(state, "grad")
    return (count == 0) | ((count < steps) & (optax.tree.norm(grad) >= tol))

  params, state = jax.lax.while_loop(keep_going, step,
                                     (params, opt.init(params)))
  return params, optax.tree.get(state, "count")


def linear_probe(train_feats_NxD, train_labels_N, test_feats_MxD,
                 test_labels_M, *, C=10.0, scaling="minmax", steps=1000,
                 tol=1e-5, return_params=False):
  """Test accuracy of multinomial logistic regression on frozen features.

  Fits W, b minimising  C * sum_i CE(softmax(W^T x_i + b), y_i) + ||W||^2 / 2
  (scikit-learn's `LogisticRegression(C=C)` objective, intercept not
  penalised), divided by C * N for conditioning, by full-batch L-BFGS until
  the gradient norm is below `tol` or after `steps` iterations. Features are
  scaled with statistics of the train set (`scaling`: "minmax" as in
  Tschannen et al. 2020, whose C is 10; "standard"; or "none").

  Returns:
    The test accuracy in [0, 1]; with `return_params=True`, also a dict with
    `w` [D, K], `b` [K], the scaler's `shift` and `scale` [D] (logits are
    `((x - shift) / scale) @ w + b`), `train_accuracy` and `iterations`.
  """
  train_NxD, train_N, test_MxD, test_M = checks.check_features(
      train_feats_NxD, train_labels_N, test_feats_MxD, test_labels_M)
  if C <= 0:
    raise ValueError(f"C must be positive, got {C}.")
  shift_D, scale_D = checks.fit_scaler(train_NxD, scaling)
  x_NxD, x_MxD = (train_NxD - shift_D) / scale_D, (test_MxD - shift_D) / scale_D
  params, iterations = _fit_logistic(
      jnp.asarray(x_NxD), jnp.asarray(train_N),
      jnp.float32(1.0 / (C * len(train_N))), jnp.float32(tol),
      num_classes=_num_classes(train_N, test_M), steps=int(steps))
  accuracy = _accuracy(x_MxD @ params["w"] + params["b"], test_M)
  if not return_params:
    return accuracy
  return accuracy, {
      "w": np.asarray(params["w"]), "b": np.asarray(params["b"]),
      "shift": shift_D, "scale": scale_D, "iterations": int(iterations),
      "train_accuracy": _accuracy(x_NxD @ params["w"] + params["b"], train_N),
  }


def _mlp_logits(params, x_BxD, *, dropout, key):
  hidden_BxH = jax.nn.relu(x_BxD @ params["w1"] + params["b1"])
  if key is not None and dropout > 0:
    keep_BxH = jax.random.bernoulli(key, 1.0 - dropout, hidden_BxH.shape)
    hidden_BxH = jnp.where(keep_BxH, hidden_BxH / (1.0 - dropout), 0.0)
  return hidden_BxH @ params["w2"] + params["b2"]


@functools.partial(jax.jit, static_argnames=(
    "num_classes", "hidden", "epochs", "batch_size", "dropout",
    "learning_rate"))
def _fit_mlp(x_NxD, y_N, key, *, num_classes, hidden, epochs, batch_size,
             dropout, learning_rate):
  """Adam on minibatches (a fresh permutation per epoch); returns params."""
  n, d = x_NxD.shape
  init_key, train_key = jax.random.split(key)
  k1, k2 = jax.random.split(init_key)
  glorot = jax.nn.initializers.glorot_uniform()
  params = {"w1": glorot(k1, (d, hidden)), "b1": jnp.zeros((hidden,)),
            "w2": glorot(k2, (hidden, num_classes)),
            "b2": jnp.zeros((num_classes,))}
  tx = optax.adam(learning_rate)
  steps_per_epoch = n // batch_size

  def loss(params, x_BxD, y_B, key):
    logits_BxK = _mlp_logits(params, x_BxD, dropout=dropout, key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxK,
                                                           y_B).mean()

  def batch_step(carry, idx_B):
    params, opt_state, key = carry
    key, sub = jax.random.split(key)
    grad = jax.grad(loss)(params, x_NxD[idx_B], y_N[idx_B], sub)
    updates, opt_state = tx.update(grad, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, key), None

  def epoch_step(carry, epoch_key):
    perm = jax.random.permutation(epoch_key, n)[:steps_per_epoch * batch_size]
    carry, _ = jax.lax.scan(batch_step, carry,
                            perm.reshape(steps_per_epoch, batch_size))
    return carry, None

  perm_key, drop_key = jax.random.split(train_key)
  (params, _, _), _ = jax.lax.scan(
      epoch_step, (params, tx.init(params), drop_key),
      jax.random.split(perm_key, epochs))
  return params


def mlp_probe(train_feats_NxD, train_labels_N, test_feats_MxD, test_labels_M,
              *, hidden=200, dropout=0.5, epochs=50, batch_size=128,
              learning_rate=1e-3, scaling="standard", seed=0,
              return_params=False):
  """Test accuracy of a one-hidden-layer MLP probe on frozen features.

  logits = W2^T dropout(relu(W1^T x + b1)) + b2, with `hidden` units and
  dropout rate `dropout` during training, trained with Adam on the softmax
  cross-entropy for `epochs` passes of minibatches of `batch_size` (the
  non-linear evaluation of Hjelm et al. 2019, "Learning deep representations
  by mutual information estimation and maximization"). Features are scaled
  as in `linear_probe`.

  Returns:
    The test accuracy; with `return_params=True`, also the parameters, the
    scaler's `shift` / `scale` and `train_accuracy`.
  """
  train_NxD, train_N, test_MxD, test_M = checks.check_features(
      train_feats_NxD, train_labels_N, test_feats_MxD, test_labels_M)
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
  batch_size = min(int(batch_size), len(train_N))
  shift_D, scale_D = checks.fit_scaler(train_NxD, scaling)
  x_NxD, x_MxD = (train_NxD - shift_D) / scale_D, (test_MxD - shift_D) / scale_D
  params = _fit_mlp(
      jnp.asarray(x_NxD), jnp.asarray(train_N), jax.random.key(seed),
      num_classes=_num_classes(train_N, test_M), hidden=int(hidden),
      epochs=int(epochs), batch_size=batch_size, dropout=float(dropout),
      learning_rate=float(learning_rate))
  logits = functools.partial(_mlp_logits, params, dropout=0.0, key=None)
  accuracy = _accuracy(logits(jnp.asarray(x_MxD)), test_M)
  if not return_params:
    return accuracy
  return accuracy, {
      **{k: np.asarray(v) for k, v in params.items()},
      "shift": shift_D, "scale": scale_D,
      "train_accuracy": _accuracy(logits(jnp.asarray(x_NxD)), train_N),
  }


def noisy_half_pixels(train_x, test_x, *, noise_std=0.05, seed=0):
  """Tschannen et al. 2020's baseline features: half the pixels plus noise.

  Flattens each image (row-major, so for [N, 28, 28, 1] MNIST the first half
  is the top 14 rows, the paper's view x1), keeps the first half of the
  pixels and adds N(0, noise_std^2) noise drawn from
  `np.random.default_rng(seed)`, to train then test. Returns
  (train_NxP, test_MxP), P = pixels // 2.
  """
  rng = np.random.default_rng(seed)
  feats = []
  for x in (train_x, test_x):
    flat_NxP = np.asarray(x, np.float32).reshape(len(x), -1)
    half_NxH = flat_NxP[:, :flat_NxP.shape[1] // 2]
    feats.append(half_NxH + noise_std * rng.standard_normal(
        half_NxH.shape, dtype=np.float32))
  return feats[0], feats[1]


def pixel_baseline_accuracy(train_x, train_y, test_x, test_y, *,
                            noise_std=0.05, seed=0, C=10.0):
  """Tschannen et al. 2020's raw-pixel baseline (about 0.835 on full MNIST).

  The test accuracy of `linear_probe` (min-max scaling, C = 10 as in their
  code) on `noisy_half_pixels(train_x, test_x, noise_std, seed)` ("On Mutual
  Information Maximization for Representation Learning", Sec. 3).
  """
  train_NxP, test_MxP = noisy_half_pixels(train_x, test_x,
                                          noise_std=noise_std, seed=seed)
  return linear_probe(train_NxP, train_y, test_MxP, test_y, C=C,
                      scaling="minmax")
