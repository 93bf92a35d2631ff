"""Tests of `mi_jax.estimate`, NeuralEstimator and `mi-jax estimate`.

Compilation dominates on CPU, so the tests share a few configurations
(estimate() caches its compiled functions per configuration).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import mi_jax
from mi_jax import estimation
from mi_jax.cli import main as cli_main
from mi_jax.estimation import tasks

# One configuration shared by the accuracy, protocol and CLI tests (the CLI
# passes bound_options={"clip": 5.0} for SMILE).
TASK = tasks.correlated_gaussian(2, mi=1.0)
N = 2500
SHARED = dict(bound="smile", bound_options={"clip": 5.0}, batch_size=128,
              steps=1500, lr=5e-4, seed=0, holdout=0.2)


@pytest.fixture(scope="module")
def data():
  return TASK.sample(N, seed=0)


@pytest.fixture(scope="module")
def result(data):
  return mi_jax.estimate(*data, **SHARED)


def test_estimate_lands_near_the_truth(result):
  assert result.mi == pytest.approx(TASK.mi, abs=0.25)
  assert 0.0 < result.stderr < 0.15
  assert not result.diverged and not result.hit_ceiling


def test_result_carries_curves_and_metadata(result):
  e = len(result.curve_steps)
  assert e >= 1 and result.curve_train.shape == (e,)
  assert result.curve_heldout.shape == (e,)
  assert result.curve_steps[-1] == result.steps
  assert np.all(np.diff(result.curve_steps) > 0)
  assert result.n_train == 2000 and result.n_heldout == 500
  assert result.batch_size == 128 and result.bound == "smile"
  assert result.skipped_steps == 0 and result.plausible
  text = str(result)
  assert "±" in text and "nats" in text
  assert float(result) == result.mi


def test_estimate_is_deterministic_given_the_seed(data, result):
  again = mi_jax.estimate(*data, **SHARED)
  assert again.mi == result.mi
  np.testing.assert_array_equal(again.curve_heldout, result.curve_heldout)


def test_gaussianize_makes_estimates_invariant_to_monotone_maps(data):
  x, y = data
  plain = mi_jax.estimate(x, y, **SHARED, preprocess="gaussianize")
  warped = mi_jax.estimate(np.arcsinh(3 * x), y**3, **SHARED,
                           preprocess="gaussianize")
  assert warped.mi == pytest.approx(plain.mi, abs=1e-4)
  assert plain.mi == pytest.approx(TASK.mi, abs=0.25)
  with pytest.raises(ValueError, match="preprocess"):
    mi_jax.estimate(x, y, batch_size=128, preprocess="rank")


def test_gaussianize_fits_on_training_rows_only():
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  x = np.arange(10.0)[:, None] ** 3
  z = _neural._gaussianize(x, np.arange(5))  # pylint: disable=protected-access
  assert np.all(np.diff(z[:, 0]) >= 0)  # monotone
  assert np.all(np.isfinite(z))
  # Rows past the training range map to the same clipped extreme quantile.
  np.testing.assert_allclose(z[5:, 0], z[9, 0])


def test_canonical_maps_are_invertible_and_diagonalise_on_training_rows():
  """preprocess="canonical": on the training rows each side has identity
  covariance and the cross-covariance is diag(rho), rho the canonical
  correlations in decreasing order; the maps are linear and invertible (also
  for a duplicated column), so the MI is unchanged."""
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.standard_normal((400, 3))
  y = np.c_[x[:, :2] @ [[0.8, 0.1], [0.0, 0.5]] + rng.standard_normal((400, 2)),
            rng.standard_normal(400)]
  train = np.arange(300)
  u, v = _neural._canonical(x, y, train)  # pylint: disable=protected-access
  ut, vt = u[train] - u[train].mean(0), v[train] - v[train].mean(0)
  np.testing.assert_allclose(ut.T @ ut / 300, np.eye(3), atol=1e-9)
  np.testing.assert_allclose(vt.T @ vt / 300, np.eye(3), atol=1e-9)
  rho = estimation.canonical_correlations(x[train], y[train])
  np.testing.assert_allclose(ut.T @ vt / 300, np.diag(rho), atol=1e-9)
  # Linear and invertible, held-out rows included.
  mx, wx, my, wy = _neural._canonical_maps(x, y, train)  # pylint: disable=protected-access
  np.testing.assert_allclose((x - mx) @ wx, u, atol=1e-12)
  np.testing.assert_allclose((y - my) @ wy, v, atol=1e-12)
  assert np.linalg.matrix_rank(wx) == 3 and np.linalg.matrix_rank(wy) == 3
  dup = np.c_[x, x[:, :1]]  # singular covariance: still invertible
  wx = _neural._canonical_maps(dup, y, train)[1]  # pylint: disable=protected-access
  assert np.linalg.matrix_rank(wx) == 4 and np.all(np.isfinite(wx))


# A second shared configuration: InfoNCE, 300 samples of 10-d, batch 32.
SMALL = dict(bound="infonce", batch_size=32, steps=1000, lr=3e-3, holdout=0.4,
             patience=None)


def test_reported_value_is_held_out_not_training():
  # Independent x, y (true MI 0) and few samples: the critic memorises the
  # training pairs, so the training bound is high; the held-out one is not.
  # The MLP candidates only (they memorise; the default's quadratic
  # candidate barely does and wins the validation here).
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.standard_normal((300, 10)).astype(np.float32)
  y = rng.standard_normal((300, 10)).astype(np.float32)
  r = mi_jax.estimate(
      x, y, critic_options=_neural.DEFAULT_CRITIC_OPTIONS["concat"][:3],
      **SMALL)
  assert r.curve_train[-1] > 1.0
  assert r.mi < 0.3
  assert r.mi < r.curve_train.max() - 1.0


def test_diverged_flag_for_non_finite_values(data):
  nan_bound = lambda scores: jnp.mean(scores) * jnp.nan
  r = mi_jax.estimate(*data, bound=nan_bound, batch_size=128, steps=500)
  assert r.diverged and "DIVERGED" in str(r)
  assert r.steps == 0 and r.skipped_steps == 250  # guard; stops after chunk 1


@pytest.mark.parametrize("value, flag", [
    (150.0, "diverged"),  # |value| > 100 nats though finite
    (-3.0, "far_below_zero"),
])
def test_implausible_read_outs_are_flagged(data, value, flag):
  x, y = data
  const = lambda scores: jnp.mean(scores) * 0.0 + value
  r = mi_jax.estimate(x[:600], y[:600], bound=const, batch_size=64, steps=20,
                      eval_every=10, holdout=0.4)
  assert r.mi == pytest.approx(value)
  assert flag in r.flags and not r.plausible
  assert flag.upper() in str(r)


def test_flags_from_statistics_in_float64():
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  # Batch values of ~1e20: float32 variance overflows, float64 does not.
  values = np.array([1e20, -1e20, 3e20, 0.0])
  se = _neural._stderr(values, 32, 64, mean_of_batches=False)  # pylint: disable=protected-access
  assert se == pytest.approx(np.sqrt(np.var(values, ddof=1)), rel=1e-12)
  flags = _neural._implausible  # pylint: disable=protected-access
  assert flags(0.5, 0.02, [0.5, 0.52, 0.48], 0.55) == []
  assert flags(0.5, 0.02, [1.0, 1.02, 0.98], 0.55) == ["heldout_above_train"]
  assert flags(0.5, 0.6, [0.5, 0.52, 0.48], 0.55) == ["high_variance"]
  assert flags(float("nan"), 0.0, [0.0], 0.0) == ["diverged"]
  assert flags(-0.05, 0.01, [-0.05], 0.0) == []  # slightly negative is noise


def test_mine_state_rides_in_the_train_state_and_bound_runs_once(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from mi_jax import bounds, training  # pylint: disable=g-import-not-at-top
  calls = []
  real_mine = bounds.mine
  monkeypatch.setitem(bounds._BOUNDS, "mine", lambda *a, **k: calls.append(1)  # pylint: disable=protected-access
                      or real_mine(*a, **k))
  objective = estimation.make_objective("mine", {"decay": 0.9})
  model = estimation.make_critic_model(objective, "bilinear", 2, 2, seed=1)
  tx = optax.sgd(0.1)
  graphdef, state = training.init_train_state(model, tx)
  assert isinstance(state.rest["log_ema"], estimation.EmaState)
  step = jax.jit(training.make_train_step(graphdef, tx,
                                          estimation.loss_fn(objective)))
  x, y = TASK.sample(16, seed=3)
  s1, m1 = step(state, (x, y), jax.random.key(0))
  s2, _ = step(s1, (x, y), jax.random.key(0))
  assert len(calls) == 1  # traced once: one evaluation per step
  neg = ~np.eye(16, dtype=bool)
  # Step 1 starts the average at the batch value (critic starts at T = 0).
  assert float(s1.rest["log_ema"][...]) == pytest.approx(0.0, abs=1e-6)
  w = np.asarray(s1.params["critic"]["kernel"][...], np.float64)
  s = x.astype(np.float64) @ w @ y.astype(np.float64).T
  lme = np.log(np.mean(np.exp(s[neg])))
  want = np.log(0.9 * 1.0 + 0.1 * np.exp(lme))
  assert float(s2.rest["log_ema"][...]) == pytest.approx(want, rel=1e-4)
  assert float(m1["value"]) == pytest.approx(0.0, abs=1e-6)


def test_tuba_learns_its_baseline(data):
  x, y = data
  r = mi_jax.estimate(x, y, bound="tuba", batch_size=128, steps=1000)
  assert r.mi == pytest.approx(TASK.mi, abs=0.2)


@pytest.mark.parametrize("bound, gain", [("tuba", 5.0), ("interpolated", 0.2)])
def test_learned_baseline_is_part_of_the_model_and_tightens(bound, gain):
  objective = estimation.make_objective(bound)
  model = estimation.make_critic_model(objective, "separable", 2, 2)
  assert model.baseline is not None and model.log_ema is None
  # At a(x) = log E_y e^T(x, y) (what the network learns) the bound is much
  # higher than at the old fixed a = 0. For T ~ N(2, 1): TUBA(0) ~ 3 - e^2.5.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  s = jnp.asarray(np.random.default_rng(0).normal(2.0, 1.0, (64, 64)))
  a_best = jnp.log(jnp.mean(jnp.exp(s), axis=1))
  assert objective.value(s, a_best) > objective.value(s, None) + gain


def test_negative_sampling_scores_the_chosen_pairs_exactly():
  import jax  # pylint: disable=g-import-not-at-top
  from mi_jax import bounds  # pylint: disable=g-import-not-at-top
  objective = estimation.make_objective("infonce")
  model = estimation.make_critic_model(objective, "concat+separable", 3, 2,
                                       seed=0)
  # Non-zero output layers, so that every part contributes to the scores.
  for layer in (model.critic.mlp.layers[-1], model.second.h.layers[-1]):
    layer.kernel[...] = jax.random.normal(jax.random.key(1),
                                          layer.kernel[...].shape)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((8, 2)), jnp.float32)
  off = np.array([0, 3, 5, 6])
  cols = (np.arange(8)[:, None] + off[None, :]) % 8
  full = np.asarray(model(x, y))
  pairs = np.asarray(model.pair_scores(x, y, jnp.asarray(cols)))
  np.testing.assert_allclose(pairs, np.take_along_axis(full, cols, 1),
                             rtol=1e-5, atol=1e-6)
  # The loss with sampled negatives is InfoNCE with the matching mask.
  loss = estimation.loss_fn(objective)
  value = -loss(model, (x, y, jnp.asarray(cols)), None)[0]
  want = bounds.infonce(jnp.asarray(pairs), jnp.asarray(cols == np.arange(8)[:, None]))
  np.testing.assert_allclose(value, want, rtol=1e-6)
  # Groups of 4 rows: the scores are the diagonal 4 x 4 blocks of the full
  # matrix, and the loss is the mean of each block's InfoNCE (positives on
  # its diagonal).
  groups = np.asarray(model.group_scores(x, y, 4))
  for g in range(2):
    np.testing.assert_allclose(groups[4 * g:4 * g + 4],
                               full[4 * g:4 * g + 4, 4 * g:4 * g + 4],
                               rtol=1e-5, atol=1e-6)
  value = -loss(model, (x, y, 4), None)[0]
  want = np.mean([bounds.infonce(jnp.asarray(full[4 * g:4 * g + 4,
                                                   4 * g:4 * g + 4]))
                  for g in range(2)])
  np.testing.assert_allclose(value, want, rtol=1e-5)
  # A bound without a grouped shortcut: the masked bound on the groups.
  nwj = estimation.make_objective("nwj")
  value = -estimation.loss_fn(nwj)(model, (x, y, 4), None)[0]
  mask = np.arange(4)[None, :] == (np.arange(8) % 4)[:, None]
  np.testing.assert_allclose(
      value, bounds.nwj(jnp.asarray(groups), jnp.asarray(mask)), rtol=1e-5)
  with pytest.raises(ValueError, match="groups of 3"):
    model.group_scores(x, y, 3)


def test_square_gate_zero_is_the_critic_on_the_inputs_alone():
  """A zero gate: scores ignore the squares' weights (no gradient reaches
  them), equal a plain critic with the same x and y weights, and the input
  weights start at the plain critic's scale (sqrt 2 x the gated ones)."""
  import jax  # pylint: disable=g-import-not-at-top
  from mi_jax import training  # pylint: disable=g-import-not-at-top
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  objective = estimation.make_objective("infonce")
  opts = {"hidden": (8,), "square_features": True}
  gated = estimation.make_critic_model(objective, "concat", 3, 2, seed=0,
                                       critic_options=opts)
  kernel0 = np.asarray(gated.critic.mlp.layers[0].kernel[...])
  _neural._set_square_gate(gated, 0.0)  # pylint: disable=protected-access
  kernel = np.asarray(gated.critic.mlp.layers[0].kernel[...])
  np.testing.assert_allclose(kernel, math.sqrt(2.0) * kernel0, rtol=1e-6)
  last = gated.critic.mlp.layers[-1]
  last.kernel[...] = jax.random.normal(jax.random.key(1), last.kernel[...].shape)
  plain = estimation.make_critic_model(objective, "concat", 3, 2, seed=0,
                                       critic_options={"hidden": (8,)})
  rows = np.r_[0:3, 6:8]  # x and y rows of [x, x^2, y, y^2]
  plain.critic.mlp.layers[0].kernel[...] = jnp.asarray(kernel[rows])
  plain.critic.mlp.layers[0].bias[...] = gated.critic.mlp.layers[0].bias[...]
  plain.critic.mlp.layers[-1].kernel[...] = last.kernel[...]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((6, 3)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((6, 2)), jnp.float32)
  np.testing.assert_allclose(np.asarray(gated(x, y)), np.asarray(plain(x, y)),
                             rtol=1e-5, atol=1e-6)
  graphdef, params, rest = training.split_model(gated)
  loss = estimation.loss_fn(objective)
  grads = jax.grad(lambda p: loss(training.merge_model(graphdef, p, rest),
                                  (x, y), None)[0])(params)
  g_kernel = np.asarray(grads["critic"]["mlp"]["layers"][0]["kernel"][...])
  assert np.all(g_kernel[np.r_[3:6, 8:10]] == 0.0)
  assert np.abs(g_kernel[rows]).sum() > 0


def test_negatives_argument_is_checked():
  x = np.ones((100, 2))
  with pytest.raises(ValueError, match="negatives"):
    mi_jax.estimate(x, x, batch_size=8, negatives=8)
  with pytest.raises(ValueError, match="mask"):
    mi_jax.estimate(x, x, batch_size=8, negatives=3, bound="interpolated")


def test_candidates_pick_the_best_validation_value(data):
  """critic_options=[a, b, c]: all trained as one program, the best
  validation value wins; a candidate there learns what it learns alone (same
  initialisation and batches)."""
  x, y = data
  kw = dict(bound="infonce", critic="concat", batch_size=64, steps=200,
            eval_every=100, patience=None, weight_decay=0.0)
  a = {"hidden": (8,), "square_features": True}
  b = {"hidden": (8,), "square_features": True, "weight_decay": 1.0}
  c = {"hidden": [8]}  # a gate of 0 in the same program (lists group too)
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  misses = _neural._compiled.cache_info().misses  # pylint: disable=protected-access
  alone = mi_jax.estimate(x, y, critic_options=a, **kw)
  three = mi_jax.estimate(x, y, critic_options=[a, b, c], **kw)
  # One configuration (one set of compiled functions) serves all of them.
  assert _neural._compiled.cache_info().misses == misses + 1  # pylint: disable=protected-access
  assert three.candidate_values[0] == pytest.approx(
      np.max(alone.curve_heldout), abs=1e-4)
  assert len(three.candidate_values) == 3
  assert len(set(three.candidate_values)) == 3
  pick = int(np.argmax(three.candidate_values))
  assert three.critic_options == {**[a, b, c][pick], "weight_decay":
                                  [0.0, 1.0, 0.0][pick]}
  assert np.max(three.curve_heldout) == three.candidate_values[pick]
  if pick == 0:
    assert three.mi == pytest.approx(alone.mi, abs=1e-4)
  with pytest.raises(ValueError, match="critic_options"):
    mi_jax.estimate(x, y, critic_options=[], **kw)
  with pytest.raises(ValueError, match="critic_options"):
    mi_jax.estimate(x, y, critic_options=[{"weight_decay": -1.0}], **kw)


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_ensemble_reads_out_the_members_mean_score():
  """ensemble=E: the read-out is the bound on 1/E sum_e T_e (float64 check),
  dense (concat) and memory-linear blocked (separable, n > 4,096)."""
  import jax  # pylint: disable=g-import-not-at-top
  from mi_jax import training  # pylint: disable=g-import-not-at-top
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top

  def infonce64(s):
    s = np.asarray(s, np.float64)
    m = s.max(1, keepdims=True)
    lse = np.log(np.exp(s - m).sum(1)) + m[:, 0]
    return float(np.mean(np.diag(s) - lse) + math.log(len(s)))

  rng = np.random.default_rng(0)
  for critic, opts, n in (("concat", (("hidden", (8,)),), 40),
                          ("separable", (("hidden", (8,)), ("out_dim", 4)),
                           _neural.DENSE_READOUT_MAX + 3)):
    c = _neural._compiled("infonce", (), critic, opts, 2, 3)
    one_C = lambda v: np.full(1, v, np.float32)
    state = c.init(np.uint32(0), one_C(1e-3), one_C(0.0), one_C(1.0), 3)
    noise = jax.random.key(1)
    state = state.replace(params=jax.tree.map(
        lambda p: p + 0.3 * jax.random.normal(noise, p.shape, p.dtype),
        state.params))
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = rng.normal(size=(n, 3)).astype(np.float32)
    mean_s = 0.0
    for e in range(3):
      one = training.unstack_state(training.unstack_state(state, 0), e)
      model = training.merge_model(c.graphdef, one.params, one.rest)
      mean_s = mean_s + np.asarray(model(jnp.asarray(x), jnp.asarray(y)),
                                   np.float64) / 3
    if n <= _neural.DENSE_READOUT_MAX:
      # All pairs, and batches as sub-matrices of the same scores.
      sel = rng.permuted(np.tile(np.arange(n), (4, 1)), axis=1)[:, :10]
      got, batches = c.evaluate(state, jnp.asarray(x), jnp.asarray(y),
                                jnp.asarray(sel, jnp.int32), True)
      for m in range(4):
        want = infonce64(mean_s[np.ix_(sel[m], sel[m])])
        assert float(batches[0, m]) == pytest.approx(want, abs=2e-4)
      got = float(got[0])
    else:
      got = float(c.full_readout(state, jnp.asarray(x), jnp.asarray(y))[0])
    assert got == pytest.approx(infonce64(mean_s), abs=2e-4), critic


def test_noise_edge_rank_counts_canonical_correlations_above_noise():
  """Canonical correlations above the Wachter edge: 3 correlated pairs in
  10 + 10 dims give 3 (2 with max_rank=2); an equicorrelated Gaussian 1;
  independent data none, clamped to 1."""
  from mi_jax.estimation import _neural  # pylint: disable=g-import-not-at-top
  rank = lambda t: _neural._noise_edge_rank(  # pylint: disable=protected-access
      *[a.astype(np.float64) for a in t.sample(2000, seed=0)])
  assert rank(tasks.sparse_gaussian(10, 10, n_pairs=3, rho=0.6)) == 3
  assert rank(tasks.sparse_gaussian(10, 10, n_pairs=5, rho=0.6)) == 5
  assert rank(tasks.dense_gaussian(5, 5, correlation=0.5)) == 1
  x, y = tasks.sparse_gaussian(10, 10, n_pairs=3, rho=0.6).sample(2000, seed=0)
  assert _neural._noise_edge_rank(  # pylint: disable=protected-access
      x.astype(np.float64), y.astype(np.float64), max_rank=2) == 2
  rng = np.random.default_rng(0)
  assert _neural._noise_edge_rank(  # pylint: disable=protected-access
      rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10))) == 1


def test_quadratic_candidate_resolves_its_rank_and_lands_near_the_truth(data):
  """critic_options={"critic": "quadratic", "rank": "auto"} under the concat
  critic name: a quadratic critic of the noise-edge rank (2 for the 2-d
  pair), read out near the truth (the log density ratio is quadratic)."""
  r = mi_jax.estimate(*data, bound="infonce", batch_size=128, steps=1500,
                      weight_decay=0.0,
                      critic_options={"critic": "quadratic", "rank": "auto"})
  assert r.critic_options == {"critic": "quadratic", "rank": 2,
                              "weight_decay": 0.0}
  assert r.mi == pytest.approx(TASK.mi, abs=0.2)
  assert r.plausible and not r.diverged
