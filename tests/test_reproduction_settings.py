"""The Tschannen et al. reproduction settings (issue 14): notebook vs our fixes.

Checks the pieces that make a run "notebook-exact": the saga probe beside the
exact L-BFGS probe, one noise draw shared by both views, the softplus affine
scale of the RealNVP couplings, the Glorot-uniform bilinear critic, the bound
on training-split batches, and per-block evaluation noise keys.

  .venv/bin/python -m pytest -q tests/test_reproduction_settings.py
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top
from experiments.tschannen import common
from mi_jax import critics, encoders, evaluation, views


def _blobs(n, d=6, k=3, seed=0, sep=1.5):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % k
  centers = rng.normal(size=(k, d)) * sep
  return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


# ---------------------------------------------------------------- probes


def test_saga_probe_converged_matches_exact_lbfgs_probe():
  x_tr, y_tr = _blobs(300, seed=0)
  x_te, y_te = _blobs(200, seed=1)
  # Solved tightly, saga minimises the same objective (C = 10, min-max
  # scaling with the train statistics) as the exact L-BFGS probe.
  acc_saga, clf, scaler = common.saga_probe(x_tr, y_tr, x_te, y_te, tol=1e-7,
                                            return_model=True)
  acc, params = evaluation.linear_probe(x_tr, y_tr, x_te, y_te, C=10.0,
                                        tol=1e-6, return_params=True)
  np.testing.assert_allclose(scaler.data_min_, params["shift"], rtol=1e-6)
  np.testing.assert_allclose(clf.coef_.T, params["w"], atol=5e-3)  # |w| ~ 10
  # The intercepts match up to a common shift (softmax is shift-invariant).
  db = clf.intercept_ - params["b"]
  np.testing.assert_allclose(db - db.mean(), 0.0, atol=1e-2)
  assert acc_saga == acc


def test_saga_probe_loose_tolerance_stops_early():
  x_tr, y_tr = _blobs(300, seed=0)
  x_te, y_te = _blobs(200, seed=1)
  _, loose, _ = common.saga_probe(x_tr, y_tr, x_te, y_te, tol=0.1,
                                  return_model=True)
  _, tight, _ = common.saga_probe(x_tr, y_tr, x_te, y_te, tol=1e-7,
                                  return_model=True)
  assert loose.n_iter_[0] < tight.n_iter_[0]
  assert np.abs(loose.coef_ - tight.coef_).max() > 1e-3


# ---------------------------------------------------------------- noise


def test_shared_noise_is_one_draw_on_both_views_independent_is_not():
  images = jax.random.uniform(jax.random.key(0), (64, 28, 28, 1))
  base = views.make_views("top_bottom", flatten=True)
  key = jax.random.key(3)
  k_views = jax.random.split(key, 3)[0]
  v1, v2 = base(images, k_views)
  s1, s2 = common.noisy_views(base, 0.05, shared=True)(images, key)
  i1, i2 = common.noisy_views(base, 0.05, shared=False)(images, key)
  n1, n2 = np.asarray(s1 - v1), np.asarray(s2 - v2)
  np.testing.assert_allclose(n1, n2, atol=3e-7)  # float32 rounding of v + n
  np.testing.assert_allclose(n1.std(), 0.05, rtol=0.03)
  m1, m2 = np.asarray(i1 - v1), np.asarray(i2 - v2)
  np.testing.assert_allclose(m1.std(), 0.05, rtol=0.03)
  np.testing.assert_allclose(m2.std(), 0.05, rtol=0.03)
  assert abs(np.corrcoef(m1.ravel(), m2.ravel())[0, 1]) < 0.02
  assert common.noisy_views(base, 0.0, shared=True) is base


def test_variant_selects_shared_noise_in_the_training_loss():
  """The notebook variant's loss sees one draw on both views, the fixed one two.

  Identity encoders and an identity critic make the InfoNCE scores v1 . v2,
  so the two variants' losses differ exactly by the noise terms.
  """
  class Id(nnx.Module):
    def __call__(self, x):
      return x

  images = jax.random.uniform(jax.random.key(0), (16, 28, 28, 1)) * 0.0
  batch = {"image": images}
  key = jax.random.key(1)
  out = {}
  for variant in common.VARIANTS:
    settings = common.Settings(variant=variant)
    program = common.multiview_program(
        lambda rngs: Id(), lambda rngs: Id(),
        lambda rngs: critics.make("inner_product", 392, 392, rngs=rngs),
        "infonce", settings, noise_std=0.05)
    model = program.model_fn(jax.random.key(0))
    _, m = program.loss_fn(model, batch, key)
    out[variant] = float(m["mi"])
  # On blank images with shared noise n, s_ii = |n_i|^2 ~ 392 * 0.05^2 = 0.98
  # and s_ij ~ 0: I_NCE close to its ceiling; independent noise: close to 0.
  k_noise = jax.random.split(jax.random.split(key, 3)[0], 3)[1]  # views key
  n = jax.random.normal(k_noise, (16, 392)) * 0.05
  s = np.asarray(n @ n.T, np.float64)
  ref = np.mean(np.diag(s) - np.log(np.mean(np.exp(s), axis=1)))
  np.testing.assert_allclose(out["notebook"], ref, rtol=1e-4)
  assert abs(out["fixed"]) < 0.1 < out["notebook"]


def test_evaluation_noise_differs_per_block_and_is_reproducible():
  x_N = jnp.zeros((2500, 5))

  def fn(states, x, key):  # "features" = pure noise, [S=1, C, D]
    del states
    return views.add_noise(x, key, 1.0)[None]

  key = jax.random.key(7)
  f = common.features_S(fn, None, x_N, key)
  assert f.shape == (1, 2500, 5)
  b0, b1, b2 = f[0, :1000], f[0, 1000:2000], f[0, 2000:]
  assert not np.allclose(b0, b1) and not np.allclose(b0[:500], b2)
  np.testing.assert_array_equal(
      b1, np.asarray(views.add_noise(x_N[:1000], jax.random.fold_in(key, 1),
                                     1.0)))
  np.testing.assert_array_equal(f, common.features_S(fn, None, x_N, key))


# ---------------------------------------------------------------- RealNVP


def _affine_reference(model, x):
  """One affine coupling + permutation in NumPy float64, softplus scale."""
  net = model.nets[0]
  w = [(np.asarray(l.kernel[...], np.float64), np.asarray(l.bias[...],
                                                         np.float64))
       for l in net.layers]
  x = np.asarray(x, np.float64)
  k = model.num_masked
  x0, x1 = x[:, :k], x[:, k:]
  h = np.maximum(x0 @ w[0][0] + w[0][1], 0.0)
  out = h @ w[1][0] + w[1][1]
  shift, raw = out[:, :x1.shape[1]], out[:, x1.shape[1]:]
  scale = np.log1p(np.exp(raw)) + 1e-7
  z = np.concatenate([x0, x1 * scale + shift], axis=1)[:, list(
      model.permutations[0])]
  return z, np.log(scale).sum(1)


def test_realnvp_softplus_scale_matches_reference_and_inverts():
  model = encoders.RealNVP(6, num_couplings=1, hidden=(5,), coupling="affine",
                           affine_scale="softplus", init_std=0.7, seed=2,
                           rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (8, 6))
  z, log_det = jax.jit(model.forward_and_log_det)(x)
  z_ref, log_det_ref = _affine_reference(model, x)
  np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(log_det, log_det_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model.inverse(z), x, rtol=1e-4, atol=1e-5)


def test_realnvp_softplus_starts_at_scale_log2_tanh_at_identity():
  x = jax.random.normal(jax.random.key(1), (4, 8))
  kw = dict(num_couplings=1, hidden=(4,), coupling="affine", init_std=1e-8,
            seed=0, rngs=nnx.Rngs(0))
  soft = encoders.RealNVP(8, affine_scale="softplus", **kw)
  tanh = encoders.RealNVP(8, **kw)
  _, ld_soft = soft.forward_and_log_det(x)
  _, ld_tanh = tanh.forward_and_log_det(x)
  np.testing.assert_allclose(ld_soft, 4 * np.log(np.log(2.0) + 1e-7),
                             rtol=1e-5)
  np.testing.assert_allclose(ld_tanh, 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="affine_scale"):
    encoders.RealNVP(8, affine_scale="exp", **kw)


# ---------------------------------------------------------------- critics


def test_bilinear_glorot_uniform_init_and_default_unchanged():
  da, db = 392, 200
  glorot = critics.make("bilinear", da, db, init="glorot_uniform",
                        rngs=nnx.Rngs(0))
  w = np.asarray(glorot.kernel[...], np.float64)
  limit = np.sqrt(6.0 / (da + db))
  assert np.abs(w).max() <= limit
  assert np.abs(w).max() > 0.99 * limit
  np.testing.assert_allclose(w.std(), np.sqrt(2.0 / (da + db)), rtol=0.01)
  default = critics.make("bilinear", da, db, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.asarray(default.kernel[...]).std(),
                             (da * db) ** -0.5, rtol=0.01)
  with pytest.raises(ValueError, match="init"):
    critics.make("bilinear", 4, 4, init="he", rngs=nnx.Rngs(0))


def test_bilinear_critic_per_variant():
  for variant, std in (("notebook", np.sqrt(2.0 / 200)),
                       ("fixed", 1.0 / 100)):
    make = common.bilinear_critic(100, common.Settings(variant=variant))
    w = np.asarray(make(nnx.Rngs(0)).kernel[...])
    np.testing.assert_allclose(w.std(), std, rtol=0.02)


# ---------------------------------------------------------------- bounds


def test_training_split_bound_beside_held_out_bound():
  """With the train split equal to the test split (and no noise), the bound
  on training-split batches equals the held-out one; on other data it does
  not; both probes are reported."""
  rng = np.random.default_rng(0)
  split = {"image": rng.uniform(size=(64, 28, 28, 1)).astype(np.float32),
           "label": np.tile(np.arange(4), 16).astype(np.int32)}
  settings = common.Settings(steps=2, seeds=1, eval_every=2, batch_size=16,
                             lr=1e-2, variant="fixed")

  def enc(rngs):
    return encoders.MLP(392, hidden=(8,), out_dim=8, rngs=rngs)

  program = common.multiview_program(enc, enc, common.bilinear_critic(8, settings),
                                     "infonce", settings)
  rows = common.run_program("t", program, {"train": split, "test": split},
                            settings, verbose=False)
  for r in rows:
    np.testing.assert_allclose(r["mi_trainsplit"], r["mi_test"], rtol=1e-6)
    assert 0.0 <= r["accuracy_saga"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
  other = {"image": rng.uniform(size=(64, 28, 28, 1)).astype(np.float32),
           "label": split["label"]}
  rows = common.run_program("t", program, {"train": split, "test": other},
                            settings, verbose=False)
  assert abs(rows[-1]["mi_trainsplit"] - rows[-1]["mi_test"]) > 1e-4


def test_exact_probe_every_skips_only_the_exact_probe():
  """`exact_probe_every`: the exact probe at step 0, its multiples and the
  last step; saga at every evaluation; training and the other metrics are
  those of a run with the exact probe everywhere."""
  rng = np.random.default_rng(1)
  split = {"image": rng.uniform(size=(64, 28, 28, 1)).astype(np.float32),
           "label": np.tile(np.arange(4), 16).astype(np.int32)}
  data = {"train": split, "test": split}

  def enc(rngs):
    return encoders.MLP(392, hidden=(8,), out_dim=8, rngs=rngs)

  def run(every):
    settings = common.Settings(steps=6, seeds=2, eval_every=2, batch_size=16,
                               lr=1e-2, variant="fixed",
                               exact_probe_every=every)
    program = common.multiview_program(
        enc, enc, common.bilinear_critic(8, settings), "infonce", settings)
    return common.run_program("t", program, data, settings, verbose=False)

  sparse, dense = run(4), run(None)
  assert [r["step"] for r in sparse] == [0, 0, 2, 2, 4, 4, 6, 6]
  assert [r["step"] for r in sparse if "accuracy" in r] == [0, 0, 4, 4, 6, 6]
  assert all("accuracy" in r for r in dense)
  for rs, rd in zip(sparse, dense):
    for k in ("mi_test", "mi_trainsplit", "accuracy_saga"):
      assert rs[k] == rd[k], k
    if "accuracy" in rs:
      assert rs["accuracy"] == rd["accuracy"]
  steps, mu, _ = common.curves(sparse, "accuracy")
  np.testing.assert_array_equal(steps, [0, 4, 6])
  assert np.isfinite(mu).all()
  assert common.failed_seeds(sparse) == []
  table = common.summary_table({"t": sparse}, ["accuracy", "accuracy_saga"])
  assert "nan" not in table
