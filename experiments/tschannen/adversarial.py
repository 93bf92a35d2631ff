"""§3.1b of Tschannen et al. (ICLR 2020): an adversarial invertible encoder.

g1 is a RealNVP of 30 affine couplings (2x512 ReLU nets, weights ~ truncated
N(0, 1e-4^2), near-identity start) on the top MNIST half. A linear classifier
(Adam 1e-3) is trained on the labels, while the encoder (Adam 1e-5) is
trained to make it maximally unsure: cross-entropy of the classifier's
softmax to the uniform distribution. 1,000 warm-up classifier steps, then 10
classifier steps per encoder step; 4,000 encoder steps, evaluated every 400
(the paper's public notebook). The encoder stays invertible, so
I(x1; g1(x1)) is maximal throughout, yet a fresh linear probe on its features
ends up worse than on the raw pixels (paper, Fig. 1c). The affine scale is
softplus(raw) + 1e-7 as in the notebook (`--variant notebook`, default; not
the identity at initialisation) or our tanh-bounded log-scale
(`--variant fixed`, which may deny the adversary a collapse of the scales).

During warm-up the encoder is fixed, so the warm-up classifier steps use the
precomputed codes of the training split (the same computation, done once).

  .venv/bin/python experiments/tschannen/adversarial.py          # paper setting
  .venv/bin/python experiments/tschannen/adversarial.py --quick
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
from mi_jax import encoders, training  # pylint: disable=g-import-not-at-top

NUM_CLASSES = 10
WARMUP = 1000
CLF_STEPS = 10


def classifier_loss(clf, batch, key):
  """Cross-entropy of the linear classifier on (code, label)."""
  del key
  logits = clf(batch["code"])
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]).mean()
  return loss, {"loss_c": loss}


def run(settings, seed_ids, *, encoder_steps, record_every, data,
        num_couplings=30, verbose=True):
  """Adversarial training of len(seed_ids) seeds as one vmapped program.

  Rows per (seed, evaluation): `accuracy` / `accuracy_saga` (fresh exact and
  saga linear probes on the codes), the last classifier loss `loss_c`, the
  mean encoder loss `loss_e` since the last evaluation, `nonfinite_steps`.
  """
  tx_c, tx_e = optax.adam(1e-3), optax.adam(1e-5)
  keys_S = common.seed_keys(seed_ids)

  def make_encoder(key):
    return encoders.RealNVP(392, num_couplings=num_couplings,
                            hidden=(512, 512), coupling="affine",
                            affine_scale=("softplus" if settings.notebook
                                          else "tanh"),
                            init_std=1e-4, seed=0, rngs=nnx.Rngs(key))

  def make_clf(key):
    return nnx.Linear(392, NUM_CLASSES, rngs=nnx.Rngs(key))

  gd_e, enc_S = training.init_train_states(
      make_encoder, tx_e, jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys_S))
  gd_c, clf_S = training.init_train_states(
      make_clf, tx_c, jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys_S))
  step_c = training.make_train_step(gd_c, tx_c, classifier_loss)

  tr, te = data["train"], data["test"]
  x_tr = jnp.asarray(common.top_half_flat(tr["image"]))
  x_te = jnp.asarray(common.top_half_flat(te["image"]))
  y_tr = jnp.asarray(tr["label"])
  b = settings.batch_size

  def encode(enc_state, x):
    return training.merge_model(gd_e, enc_state.params, enc_state.rest)(x)

  def draw(key):
    idx = jax.random.randint(key, (b,), 0, x_tr.shape[0])
    return x_tr[idx], y_tr[idx]

  def warmup_one(enc_state, clf_state, key):
    codes = jax.lax.map(lambda x: encode(enc_state, x[None])[0], x_tr,
                        batch_size=500)

    def body(clf_state, k):
      idx = jax.random.randint(k, (b,), 0, codes.shape[0])
      clf_state, m = step_c(clf_state, {"code": codes[idx],
                                        "label": y_tr[idx]}, k)
      return clf_state, m["loss_c"]
    return jax.lax.scan(body, clf_state, jax.random.split(key, WARMUP))

  def iteration(enc_state, clf_state, key):
    k_c, k_e = jax.random.split(key)

    def clf_body(clf_state, k):
      x, y = draw(k)
      code = jax.lax.stop_gradient(encode(enc_state, x))
      clf_state, m = step_c(clf_state, {"code": code, "label": y}, k)
      return clf_state, m["loss_c"]
    clf_state, loss_c = jax.lax.scan(
        clf_body, clf_state, jax.random.split(k_c, CLF_STEPS))
    clf = training.merge_model(gd_c, clf_state.params, clf_state.rest)

    def encoder_loss(enc, batch, key):
      del key
      logits = clf(enc(batch["x"]))
      uniform = jnp.full_like(logits, 1.0 / NUM_CLASSES)
      loss = optax.softmax_cross_entropy(logits, uniform).mean()
      return loss, {"loss_e": loss}

    step_e = training.make_train_step(gd_e, tx_e, encoder_loss)
    x, _ = draw(k_e)
    enc_state, m = step_e(enc_state, {"x": x}, k_e)
    return enc_state, clf_state, loss_c[-1], m["loss_e"], m["finite"]

  @jax.jit
  def warmup(enc_S, clf_S, keys_S):
    return jax.vmap(warmup_one)(enc_S, clf_S, keys_S)

  @jax.jit
  def chunk(enc_S, clf_S, keys_S):
    def body(carry, t):
      enc_S, clf_S = carry
      k_S = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys_S)
      enc_S, clf_S, lc, le, fin = jax.vmap(iteration)(enc_S, clf_S, k_S)
      return (enc_S, clf_S), (lc, le, fin)
    (enc_S, clf_S), out = jax.lax.scan(body, (enc_S, clf_S),
                                       jnp.arange(record_every))
    return enc_S, clf_S, out

  @jax.jit
  def features(enc_S, x):
    return jax.vmap(lambda s: encode(s, x))(enc_S)

  t0 = time.time()
  clf_S, _ = warmup(enc_S, clf_S,
                    jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys_S))
  timing = {"name": "adversarial RealNVP (affine)", "seeds": len(seed_ids),
            "chunk_steps": record_every, "train": [], "eval": [],
            "features": [], "bound": []}
  rows, nonfinite = [], np.zeros(len(seed_ids), int)
  loss_c = loss_e = np.full(len(seed_ids), np.nan)
  for c in range(encoder_steps // record_every + 1):
    step = c * record_every
    if c > 0:
      ck_S = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 4),
                                                   c))(keys_S)
      tw, tc = time.time(), time.process_time()
      enc_S, clf_S, (lc, le, fin) = chunk(enc_S, clf_S, ck_S)
      jax.block_until_ready(fin)
      timing["train"].append((time.time() - tw, time.process_time() - tc))
      loss_c, loss_e = np.asarray(lc).mean(0), np.asarray(le).mean(0)
      nonfinite += np.asarray(~fin).sum(0)
    tw, tc = time.time(), time.process_time()
    tf_ = time.process_time()
    ftr = common.features_S(features, enc_S, x_tr)
    fte = common.features_S(features, enc_S, x_te)
    timing["features"].append(time.process_time() - tf_)
    accs = common.probe_all(ftr, tr["label"], fte, te["label"], timing)
    acc_S = accs["accuracy"]
    timing["eval"].append((time.time() - tw, time.process_time() - tc))
    for i, seed in enumerate(seed_ids):
      rows.append({"experiment": "adversarial", "seed": seed, "step": step,
                   "accuracy": float(acc_S[i]),
                   "accuracy_saga": float(accs["accuracy_saga"][i]),
                   "loss_c": float(loss_c[i]),
                   "loss_e": float(loss_e[i]),
                   "nonfinite_steps": int(nonfinite[i])})
    if verbose:
      print(f"  [adversarial] encoder step {step:5d}  acc "
            f"{np.nanmean(acc_S):.4f} (saga "
            f"{np.nanmean(accs['accuracy_saga']):.4f})  loss_e {np.nanmean(loss_e):.4f}  "
            f"({time.time() - t0:.0f}s)", flush=True)
  common.TIMINGS.append(timing)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=20, quick_seeds=2, quick_eval_every=10)
  parser.add_argument("--couplings", type=int, default=30)
  args = parser.parse_args(argv)
  # Paper: 4,000 encoder steps, evaluated every 400.
  settings = common.settings_from_args(args)
  if not args.quick:
    settings = common.dataclasses.replace(
        settings, steps=args.steps or 4000, eval_every=args.eval_every or 400)
  data = common.load_mnist(settings)
  baseline = common.pixel_baseline(data, cache_dir=settings.out_dir)
  t0 = time.time()
  rows = run(settings, list(range(settings.seeds)),
             encoder_steps=settings.steps, record_every=settings.eval_every,
             data=data, num_couplings=args.couplings)
  return common.report(
      "adversarial", {"adversarial RealNVP (affine)": rows}, settings,
      ["accuracy", "accuracy_saga", "loss_e"],
      [("accuracy", "accuracy (fresh linear probe)"),
       ("loss_e", "encoder loss: CE to uniform")],
      baseline=baseline, title="§3.1b adversarial invertible encoder",
      wall_s=time.time() - t0,
      full=common.Settings(steps=4000, eval_every=400))


if __name__ == "__main__":
  main()
