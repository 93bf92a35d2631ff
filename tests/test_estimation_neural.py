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
  assert result.wall_time > 0
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


# A second shared configuration: InfoNCE, 300 samples of 10-d, batch 32.
SMALL = dict(bound="infonce", batch_size=32, steps=1000, lr=3e-3, holdout=0.4,
             patience=None)


def test_reported_value_is_held_out_not_training():
  # Independent x, y (true MI 0) and few samples: the critic memorises the
  # training pairs, so the training bound is high; the held-out one is not.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((300, 10)).astype(np.float32)
  y = rng.standard_normal((300, 10)).astype(np.float32)
  r = mi_jax.estimate(x, y, **SMALL)
  assert r.curve_train[-1] > 1.0
  assert r.mi < 0.3
  assert r.mi < r.curve_train.max() - 1.0


def test_diverged_flag_for_non_finite_values(data):
  nan_bound = lambda scores: jnp.mean(scores) * jnp.nan
  r = mi_jax.estimate(*data, bound=nan_bound, batch_size=128, steps=500)
  assert r.diverged and "diverged" in str(r)
  assert r.steps == 0


def test_log_k_ceiling_flag_for_infonce():
  task = tasks.correlated_gaussian(10, mi=20.0)
  x, y = task.sample(300, seed=1)
  r = mi_jax.estimate(x, y, **SMALL)
  assert r.mi > 0.9 * math.log(32) and r.mi <= math.log(32) + 1e-5
  assert r.hit_ceiling and "log K" in str(r)


def test_still_rising_flag_when_training_is_cut_short(data):
  r = mi_jax.estimate(*data, **{**SHARED, "lr": 2e-5, "steps": 1000})
  assert r.still_rising
  assert r.curve_heldout[-1] > r.curve_heldout[0]


@pytest.mark.parametrize("x, y, kwargs, match", [
    (np.zeros((100, 2)), np.zeros((99, 2)), {}, "same number of samples"),
    (np.zeros(100), np.zeros((100, 2)), {}, r"reshape\(-1, 1\)"),
    (np.zeros((0, 2)), np.zeros((0, 2)), {}, "empty"),
    (np.full((100, 2), np.inf), np.zeros((100, 2)), {}, "non-finite"),
    (np.ones((100, 2)), np.ones((100, 2)), {"batch_size": 64},
     "larger than the data"),
    (np.ones((100, 2)), np.ones((100, 2)), {"bound": "nope"},
     "unknown bound 'nope'.*infonce"),
    (np.ones((100, 2)), np.ones((100, 2)), {"critic": "nope"},
     "critic 'nope'.*separable"),
    (np.ones((100, 2)), np.ones((100, 2)), {"holdout": 1.5}, "holdout"),
    (np.ones((100, 2)), np.ones((100, 2)), {"steps": 0}, "steps"),
])
def test_bad_input_raises_clear_errors(x, y, kwargs, match):
  with pytest.raises(ValueError, match=match):
    mi_jax.estimate(x, y, **{"batch_size": 8, **kwargs})


def test_neural_estimator_protocol(data, result):
  est = estimation.NeuralEstimator(**SHARED)
  value = est.estimate(*data)
  assert isinstance(value, float) and value == result.mi
  assert est.last_result.stderr == result.stderr
  assert est.parameters()["bound"] == "smile"


def test_cli_prints_estimate_and_stderr(tmp_path, capsys, data, result):
  x, y = data
  np.save(tmp_path / "x.npy", x)
  np.save(tmp_path / "y.npy", y)
  argv = ["estimate", "--x", str(tmp_path / "x.npy"), "--y",
          str(tmp_path / "y.npy"), "--bound", "smile", "--batch-size", "128",
          "--steps", "1500"]
  assert cli_main(argv) == 0
  out = capsys.readouterr().out
  assert out.startswith(f"{result.mi:.4f} ± {result.stderr:.4f} nats")
  assert cli_main(argv[:5] + ["--method", "gaussian"]) == 0
  value = float(capsys.readouterr().out.split()[0])
  assert value == pytest.approx(TASK.mi, abs=0.1)


def test_cli_bad_input_exits_2_with_message(tmp_path, capsys):
  np.save(tmp_path / "x.npy", np.zeros((10, 2)))
  np.save(tmp_path / "y.npy", np.zeros((9, 2)))
  code = cli_main(["estimate", "--x", str(tmp_path / "x.npy"), "--y",
                   str(tmp_path / "y.npy")])
  assert code == 2
  assert "same number of samples" in capsys.readouterr().err
  code = cli_main(["estimate", "--x", str(tmp_path / "missing.npy"), "--y",
                   str(tmp_path / "y.npy")])
  assert code == 2
  assert "no such file" in capsys.readouterr().err
  np.save(tmp_path / "y1.npy", np.zeros(10))
  code = cli_main(["estimate", "--x", str(tmp_path / "x.npy"), "--y",
                   str(tmp_path / "y1.npy")])
  assert code == 2
  assert "reshape(-1, 1)" in capsys.readouterr().err
