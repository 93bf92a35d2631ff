"""Deep InfoMax's evaluation suite for a trained (or random) encoder.

Hjelm et al., ICLR 2019, section 4 and the reference code (rdevon/DIM):

- linear probes (`mi_jax.evaluation.linear_probe`) and the reference MLP
  probe (`reference_mlp_probe`: 200 units, batch norm, ReLU, dropout 0.1,
  Adam 1e-4 with step decays) on the conv / fc / Y features;
- I(X; Y) between the input and the code, a MINE estimate
  (`mi_jax.estimation.estimate(bound="mine")`, held-out read-out);
- NDM, the neural dependency measure: KL(Y || shuffled Y), where shuffled Y
  permutes each dimension independently across the batch (the product of
  Y's marginals), estimated with the DV bound
  (`mi_jax.estimation.divergence.divergence`); 0 for independent units;
- prior matching: JS(sigmoid(Y) || U[0, 1]^d) and a held-out
  discriminator's balanced accuracy (0.5 when the codes match the prior),
  plus mean ||Y|| and the fraction of sigmoid(Y) outside [0.01, 0.99].
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax.evaluation import checks
from mi_jax.evaluation.probe import linear_probe

FEATURES = ("conv", "fc", "y")


def _bn(h_BxH, mean_H, var_H, *, train, running, momentum=0.1, eps=1e-5):
  if train:
    mean_H, var_H = h_BxH.mean(0), h_BxH.var(0)
    n = h_BxH.shape[0]
    running = jax.tree.map(
        lambda r, v: (1 - momentum) * r + momentum * v, running,
        (mean_H, var_H * n / (n - 1)))  # PyTorch: unbiased running variance
  return (h_BxH - mean_H) / jnp.sqrt(var_H + eps), running


def _mlp_logits(params, running, x_BxD, *, dropout, key, train):
  h_BxH = x_BxD @ params["w1"]
  h_BxH, running = _bn(h_BxH, *running, train=train, running=running)
  h_BxH = jax.nn.relu(h_BxH * params["gamma"] + params["beta"])
  if train and dropout > 0:
    keep_BxH = jax.random.bernoulli(key, 1.0 - dropout, h_BxH.shape)
    h_BxH = jnp.where(keep_BxH, h_BxH / (1.0 - dropout), 0.0)
  return h_BxH @ params["w2"] + params["b2"], running


@functools.partial(jax.jit, static_argnames=(
    "num_classes", "hidden", "epochs", "batch_size", "dropout", "lr",
    "milestones", "decay"))
def _fit(x_NxD, y_N, key, *, num_classes, hidden, epochs, batch_size, dropout,
         lr, milestones, decay):
  n, d = x_NxD.shape
  k1, k2, key = jax.random.split(key, 3)
  bound1, bound2 = 1 / np.sqrt(d), 1 / np.sqrt(hidden)  # PyTorch's Linear init
  params = {"w1": jax.random.uniform(k1, (d, hidden), minval=-bound1,
                                     maxval=bound1),
            "gamma": jnp.ones((hidden,)), "beta": jnp.zeros((hidden,)),
            "w2": jax.random.uniform(k2, (hidden, num_classes), minval=-bound2,
                                     maxval=bound2),
            "b2": jnp.zeros((num_classes,))}
  running = (jnp.zeros((hidden,)), jnp.ones((hidden,)))
  spe = n // batch_size
  schedule = optax.piecewise_constant_schedule(
      lr, {m * spe: decay for m in milestones})
  tx = optax.adam(schedule)

  def loss(p, running, x, y, k):
    logits, running = _mlp_logits(p, running, x, dropout=dropout, key=k,
                                  train=True)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
            running)

  def batch_step(carry, idx_B):
    p, running, opt_state, key = carry
    key, sub = jax.random.split(key)
    grad, running = jax.grad(loss, has_aux=True)(p, running, x_NxD[idx_B],
                                                 y_N[idx_B], sub)
    updates, opt_state = tx.update(grad, opt_state, p)
    return (optax.apply_updates(p, updates), running, opt_state, key), None

  def epoch(carry, k):
    perm = jax.random.permutation(k, n)[:spe * batch_size]
    return jax.lax.scan(batch_step, carry, perm.reshape(spe, batch_size))[0], None

  kp, kd = jax.random.split(key)
  (params, running, _, _), _ = jax.lax.scan(
      epoch, (params, running, tx.init(params), kd),
      jax.random.split(kp, epochs))
  return params, running


def reference_mlp_probe(train_feats_NxD, train_labels_N, test_feats_MxD,
                        test_labels_M, *, hidden=200, dropout=0.1, lr=1e-4,
                        epochs=150, milestones=(50, 100), decay=0.1,
                        batch_size=64, seed=0) -> float:
  """Test accuracy of DIM's reference non-linear classifier on frozen features.

    logits = W2 dropout(relu(BN(W1 x))) + b2

  200 hidden units, batch norm (batch statistics in training, running
  averages with PyTorch's momentum 0.1 at test), dropout 0.1, Adam at
  `lr` = 1e-4 multiplied by `decay` = 0.1 at each epoch in `milestones`
  (rdevon/DIM `scripts/evaluation.py`: MultiStepLR [50, 100], batch 64).
  `epochs` is ours (the reference's run length is a command-line choice);
  pass shorter `epochs` with scaled `milestones` on a slow machine.
  Features are standardised with the training statistics.
  """
  tr, ytr, te, yte = checks.check_features(train_feats_NxD, train_labels_N,
                                           test_feats_MxD, test_labels_M)
  shift, scale = checks.fit_scaler(tr, "standard")
  num_classes = int(max(ytr.max(), yte.max())) + 1
  params, running = _fit(
      jnp.asarray((tr - shift) / scale), jnp.asarray(ytr),
      jax.random.key(seed), num_classes=num_classes, hidden=int(hidden),
      epochs=int(epochs), batch_size=min(int(batch_size), len(ytr)),
      dropout=float(dropout), lr=float(lr),
      milestones=tuple(int(m) for m in milestones), decay=float(decay))
  logits, _ = _mlp_logits(params, running, jnp.asarray((te - shift) / scale),
                          dropout=0.0, key=None, train=False)
  return float(np.mean(np.argmax(np.asarray(logits), -1) == yte))


def encoder_features(encoder, images_NxHxWxC, *, chunk: int = 1000) -> dict:
  """{"conv", "fc", "y"}: the encoder's features in eval mode, [N, D] each."""
  graphdef, state = nnx.split(encoder)

  @jax.jit
  def run(state, x):
    enc = nnx.merge(graphdef, state)
    enc.eval()
    f = enc.encode(x)
    return {k: f[k].reshape(x.shape[0], -1) for k in FEATURES}

  outs = [jax.device_get(run(state, jnp.asarray(images_NxHxWxC[i:i + chunk])))
          for i in range(0, len(images_NxHxWxC), chunk)]
  return {k: np.concatenate([o[k] for o in outs]) for k in FEATURES}


def calibrate_batch_norm(encoder, images_NxHxWxC, *, seed=0, batches=20,
                         batch_size=256):
  """Sets the BatchNorm running statistics of a random encoder from
  `batches` train-mode forward passes (no gradient step), in place."""
  graphdef, params, rest = nnx.split(encoder, nnx.Param, ...)

  @jax.jit
  def update(params, rest, x):
    enc = nnx.merge(graphdef, params, rest)
    enc.train()
    enc.encode(x)
    return nnx.split(enc, nnx.Param, ...)[2]

  rng = np.random.default_rng(seed)
  for _ in range(batches):
    idx = rng.choice(len(images_NxHxWxC), batch_size, replace=False)
    rest = update(params, rest, jnp.asarray(images_NxHxWxC[idx]))
  nnx.update(encoder, rest)


def shuffle_dimensions(y_NxD: np.ndarray, seed: int = 0) -> np.ndarray:
  """Each column permuted independently: a sample of prod_d p(y_d)."""
  rng = np.random.default_rng(seed)
  return np.stack([y_NxD[rng.permutation(len(y_NxD)), d]
                   for d in range(y_NxD.shape[1])], axis=1)


def ndm(y_NxD, *, seed=0, steps=1000) -> dict:
  """NDM = KL(p(Y) || prod_d p(Y_d)), DV bound, held-out read-out (nats).

  Hjelm et al. 2019, section 4 ("neural dependency measure"); the reference
  (rdevon/DIM `NDMEval`) trains the discriminator with its 'KL' measure, we
  read out the DV bound of the same KL. Returns {"ndm": value,
  "ndm_heldout_acc": the balanced held-out accuracy of Y vs shuffled Y}; the
  KL is unbounded (infinite when Y lies on a lower-dimensional set), the
  accuracy is in [0.5, 1].
  """
  from mi_jax.estimation import divergence  # pylint: disable=g-import-not-at-top
  y = np.asarray(y_NxD, np.float32)
  res = divergence.estimate_divergence(y, shuffle_dimensions(y, seed),
                                       kind="kl", bound="dv", steps=steps,
                                       seed=seed)
  return {"ndm": res.value, "ndm_heldout_acc": res.heldout_accuracy}


def prior_statistics(y_NxD, *, seed=0, steps=1000) -> dict:
  """JS(sigmoid(Y) || U[0,1]^d) (nats, <= log 2) and the balanced held-out
  accuracy of a discriminator trained on half of the codes and prior
  samples; mean ||Y|| and the fraction of sigmoid(Y) outside [0.01, 0.99]."""
  from mi_jax.estimation import divergence  # pylint: disable=g-import-not-at-top
  y = np.asarray(y_NxD, np.float64)
  codes = 1.0 / (1.0 + np.exp(-y))
  prior = np.random.default_rng(seed + 1).uniform(size=codes.shape)
  res = divergence.estimate_divergence(codes, prior, kind="js", steps=steps, seed=seed)
  return {"prior_js": res.value, "prior_heldout_acc": res.heldout_accuracy,
          "y_norm": float(np.mean(np.linalg.norm(y, axis=1))),
          "code_saturated": float(np.mean(np.abs(y) > np.log(99.0)))}


def marginal_uniform_js(u_NxD, *, bins: int = 20) -> float:
  """Mean over the D columns of the plug-in JS divergence (nats) between the
  `bins`-bin histogram of a column on [0, 1] and the uniform histogram:

    JS_k = 1/2 sum_j p_kj log(p_kj / m_kj) + 1/2 sum_j (1/bins) log((1/bins) / m_kj),
    m_kj = (p_kj + 1/bins) / 2,   p_kj = count of column k in bin j / N.

  0 when every column's histogram is flat, at most log 2. It sees only the
  marginals of sigmoid(Y), so it is a weak but unsaturated statistic of how
  far DIM's codes are from U[0,1]^d (a fresh discriminator separates codes
  of any short run from the prior almost perfectly). Finite samples of a
  true uniform give about (bins - 1) / (8 N).
  """
  u = np.asarray(u_NxD, np.float64)
  if u.ndim != 2:
    raise ValueError(f"u_NxD must be 2-D [N, D], got shape {u.shape}")
  counts_DxK = np.stack([np.histogram(u[:, k], bins=bins, range=(0.0, 1.0))[0]
                         for k in range(u.shape[1])]).astype(np.float64)
  p_DxK = counts_DxK / np.maximum(counts_DxK.sum(1, keepdims=True), 1.0)
  q = 1.0 / bins
  m_DxK = 0.5 * (p_DxK + q)
  kl_pm_D = np.sum(p_DxK * np.log(np.where(p_DxK > 0, p_DxK, 1.0) / m_DxK), 1)
  kl_qm_D = np.sum(q * np.log(q / m_DxK), 1)
  return float(np.mean(0.5 * (kl_pm_D + kl_qm_D)))


def mean_abs_correlation(u_NxD) -> float:
  """Mean |Pearson correlation| over the D (D - 1) ordered pairs of distinct
  columns (0 for independent units; constant columns count as 0)."""
  u = np.asarray(u_NxD, np.float64)
  d = u.shape[1]
  if u.ndim != 2 or d < 2:
    raise ValueError(f"u_NxD must be 2-D with >= 2 columns, got {u.shape}")
  c = u - u.mean(0)
  sd = np.sqrt(np.mean(c * c, 0))
  z = c / np.where(sd > 0, sd, np.inf)
  corr_DxD = z.T @ z / len(u)
  return float(np.mean(np.abs(corr_DxD[~np.eye(d, dtype=bool)])))


def input_code_mi(images_NxHxWxC, y_NxD, *, seed=0, steps=2000) -> float:
  """MINE estimate of I(X; Y) between pixels and code (nats, held-out)."""
  from mi_jax import estimation  # pylint: disable=g-import-not-at-top
  x = np.asarray(images_NxHxWxC, np.float32).reshape(len(images_NxHxWxC), -1)
  # Pixels are used as they are ([0, 1]): z-scoring would blow up the
  # near-constant border pixels.
  res = estimation.estimate(x, np.asarray(y_NxD, np.float32), bound="mine",
                            critic="separable", steps=steps,
                            batch_size=min(256, len(x) // 10), seed=seed,
                            preprocess="none")
  return float(res.mi)


def evaluate_encoder(encoder, train_images, train_labels, test_images,
                     test_labels, *, seed=0, mlp_epochs=150,
                     estimator_steps=1000, mlp_features=FEATURES) -> dict:
  """The whole suite; keys `linear/NAME` (NAME in conv, fc, y), `mlp/NAME`
  (NAME in `mlp_features`), `mi_xy`, `ndm`, and `prior_statistics`'s keys
  (measured on the test split's codes). `estimator_steps=0` skips the three
  estimators (I(X; Y), NDM, prior statistics): probes only."""
  f_tr = encoder_features(encoder, train_images)
  f_te = encoder_features(encoder, test_images)
  out = {}
  third = max(1, mlp_epochs // 3)
  for name in FEATURES:
    out[f"linear/{name}"] = float(linear_probe(
        f_tr[name], train_labels, f_te[name], test_labels, C=10.0, steps=500))
    if name in mlp_features:
      out[f"mlp/{name}"] = reference_mlp_probe(
          f_tr[name], train_labels, f_te[name], test_labels,
          epochs=mlp_epochs, milestones=(third, 2 * third), seed=seed)
  if not estimator_steps:
    return out
  out["mi_xy"] = input_code_mi(test_images, f_te["y"], seed=seed,
                               steps=2 * estimator_steps)
  out.update(ndm(f_te["y"], seed=seed, steps=estimator_steps))
  out.update(prior_statistics(f_te["y"], seed=seed, steps=estimator_steps))
  return out


def suite_protocol(feats, labels, *, options, seed, full) -> dict:
  """Protocol "dim_suite": I(X; Y), NDM and the prior statistics.

  `feats["test"]` rows are [flattened input | Y] with Y the last
  `options["code_dim"]` columns (the DIM plug-in's suite features); labels
  are unused. Only in the final evaluation (`full`); option
  `estimator_steps` (default 1000) sets the critics' training steps (I(X;Y)
  gets twice as many).
  """
  del labels
  if not full:
    return {}
  d = int(options["code_dim"])
  x_NxD, y_NxD = feats["test"][:, :-d], feats["test"][:, -d:]
  steps = int(options.get("estimator_steps", 1000))
  out = {"mi_xy": input_code_mi(x_NxD, y_NxD, seed=seed, steps=2 * steps),
         **ndm(y_NxD, seed=seed, steps=steps)}
  out.update(prior_statistics(y_NxD, seed=seed, steps=steps))
  return out


def reference_mlp_protocol(feats, labels, *, options, seed, full) -> dict:
  """Protocol "reference_mlp": `reference_mlp_probe` trained on "train",
  scored on "test" (final evaluation only). Options: `epochs` (150),
  `milestones` (epochs 1/3 and 2/3 of the way), `lr` (1e-4), `hidden`
  (200), `dropout` (0.1), `batch_size` (64)."""
  if not full:
    return {}
  epochs = int(options.get("epochs", 150))
  third = max(1, epochs // 3)
  return {"mlp_acc": reference_mlp_probe(
      feats["train"], labels["train"], feats["test"], labels["test"],
      hidden=options.get("hidden", 200), dropout=options.get("dropout", 0.1),
      lr=options.get("lr", 1e-4), epochs=epochs,
      milestones=tuple(options.get("milestones", (third, 2 * third))),
      batch_size=options.get("batch_size", 64), seed=seed)}


def _register():
  from mi_jax.evaluation import protocols  # pylint: disable=g-import-not-at-top
  protocols.register("dim_suite", suite_protocol)
  protocols.register("reference_mlp", reference_mlp_protocol)


_register()
