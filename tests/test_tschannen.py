"""Smoke tests of the Tschannen et al. (ICLR 2020) reproductions.

A tiny run of the seed-vmapped multiview program (a few steps, 2 seeds, small
encoders, random images) checks the output rows and that the vmapped program
gives each seed exactly what a run of that seed alone gives; the §4 synthetic
task is checked against its closed-form MI.

  .venv/bin/python -m pytest -q tests/test_tschannen.py
"""

import os
import sys

import jax
import numpy as np
import optax
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top
from experiments.tschannen import common
from experiments.tschannen import noniid
from mi_jax import critics, encoders


def _tiny_data(n_train=96, n_test=64, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for split, n in (("train", n_train), ("test", n_test)):
    out[split] = {
        "image": rng.uniform(size=(n, 28, 28, 1)).astype(np.float32),
        "label": np.tile(np.arange(4), n // 4).astype(np.int32)}
  return out


def _tiny_program(settings, noise_std=0.0):
  def enc(rngs):
    return encoders.MLP(392, hidden=(16,), out_dim=8, rngs=rngs)

  def bilinear(rngs):
    return critics.make("bilinear", 8, 8, rngs=rngs)

  program = common.multiview_program(enc, enc, bilinear, "infonce", settings,
                                     noise_std=noise_std)
  # SGD with momentum, not the experiments' Adam: Adam divides each gradient by
  # its own magnitude, so entries whose gradient is at rounding level (dead
  # ReLU units) take +-lr steps decided by rounding, and vmapped matmuls may
  # round differently from unbatched ones (they do in jax 0.12). SGD keeps
  # per-seed differences at rounding size, so the comparison below tests the
  # vmap, not Adam's amplification of rounding.
  program.tx = optax.sgd(settings.lr, momentum=0.9)
  return program


SETTINGS = common.Settings(steps=4, seeds=2, eval_every=4, batch_size=16,
                           lr=0.1)


@pytest.fixture(scope="module")
def vmapped_run():
  data = _tiny_data()
  rows, states = common.run_program(
      "tiny", _tiny_program(SETTINGS, noise_std=0.05), data, SETTINGS,
      seed_ids=[0, 1], verbose=False, return_states=True)
  return data, rows, states


def test_rows_have_one_entry_per_seed_and_evaluation(vmapped_run):
  _, rows, states = vmapped_run
  assert [(r["seed"], r["step"]) for r in rows] == [
      (0, 0), (1, 0), (0, 4), (1, 4)]
  for r in rows:
    assert 0.0 <= r["accuracy"] <= 1.0
    assert np.isfinite(r["mi_test"]) and r["nonfinite_steps"] == 0
    # InfoNCE on batches of 16 is at most log 16.
    assert r["mi_test"] <= np.log(16) + 1e-5
  assert all(np.isnan(r["mi_train"]) for r in rows if r["step"] == 0)
  assert all(np.isfinite(r["mi_train"]) for r in rows if r["step"] > 0)
  leaves = jax.tree.leaves(states.params)
  assert leaves and all(x.shape[0] == 2 for x in leaves)
  assert int(states.step[0]) == 4 and int(states.step[1]) == 4


def test_vmapped_seeds_equal_single_seed_runs(vmapped_run):
  data, rows, states = vmapped_run
  # Training changed the parameters, and the two seeds differ.
  p0 = jax.tree.leaves(states.params)
  assert not np.allclose(np.asarray(p0[0][0]), np.asarray(p0[0][1]))
  # Seed 1 alone, with steps in a Python loop instead of lax.scan (the
  # ConvNet path on CPU): the same per-seed computation.
  for seed in (1,):
    program = _tiny_program(SETTINGS, noise_std=0.05)
    program.scan = False
    rows1, states1 = common.run_program(
        "tiny", program, data, SETTINGS, seed_ids=[seed], verbose=False,
        return_states=True)
    for a, b in zip(jax.tree.leaves(states1.params),
                    jax.tree.leaves(states.params)):
      np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[seed]),
                                 rtol=1e-5, atol=1e-6)
    mine = [r for r in rows if r["seed"] == seed]
    assert [r["step"] for r in rows1] == [r["step"] for r in mine]
    for r1, r in zip(rows1, mine):
      np.testing.assert_allclose(r1["mi_test"], r["mi_test"], rtol=1e-5,
                                 atol=1e-6)
      np.testing.assert_allclose(r1["mi_train"], r["mi_train"], rtol=1e-5,
                                 atol=1e-6)
      assert abs(r1["accuracy"] - r["accuracy"]) <= 1.0 / 64 + 1e-9


def test_failed_seed_is_reported_not_dropped():
  rows = [{"seed": 0, "step": 4, "mi_test": 1.0, "accuracy": 0.5,
           "nonfinite_steps": 0},
          {"seed": 1, "step": 4, "mi_test": float("nan"), "accuracy": 0.5,
           "nonfinite_steps": 3}]
  assert common.failed_seeds(rows) == [1]
  table = common.summary_table({"cfg": rows}, ["mi_test"])
  assert "(n=1)" in table and "| 1 |" in table


def test_noniid_task_true_mi_and_sampling():
  assert noniid.true_mi() == pytest.approx(-0.5 * np.log(1 - 0.2 ** 2))
  assert noniid.true_mi() == pytest.approx(0.0204, abs=1e-4)
  key = jax.random.key(0)
  x, y = noniid.sample_xy(key, 20000, iid=True)
  np.testing.assert_allclose(np.corrcoef(x[:, 0], y[:, 0])[0, 1], 0.2,
                             atol=0.03)
  # Non-i.i.d.: one shared z per batch, so x_i - z has the eps covariance.
  x, y = noniid.sample_xy(key, 20000, iid=False)
  np.testing.assert_allclose(np.corrcoef(x[:, 0], y[:, 0])[0, 1], 0.9,
                             atol=0.03)


def test_noniid_vmapped_run_shapes():
  settings = common.Settings(steps=6, seeds=2, eval_every=3, batch_size=16)
  mi, finite = noniid.run_config("infonce", False, settings, [0, 1])
  assert mi.shape == (6, 2) and finite.shape == (6, 2)
  assert np.isfinite(mi).all() and finite.all()
  assert not np.allclose(mi[:, 0], mi[:, 1])  # seeds differ


def test_paired_differences_per_seed():
  from experiments.tschannen import paired  # pylint: disable=g-import-not-at-top
  a = [{"seed": s, "step": st, "accuracy": v}
       for s, (st, v) in enumerate([(10, 0.9), (10, 0.8), (10, 0.7)])]
  a += [{"seed": 0, "step": 0, "accuracy": 0.5}]
  b = [{"seed": s, "step": 10, "accuracy": v}
       for s, v in enumerate([0.85, 0.82, 0.6])]
  b += [{"seed": 0, "step": 0, "accuracy": 0.5}]
  p = paired.paired(a, b, "accuracy")
  d = np.array([0.05, -0.02, 0.1])
  assert p["step"] == 10 and p["n"] == 3 and p["a_above"] == 2
  np.testing.assert_allclose(
      [p["mean"], p["std"], p["min"], p["max"]],
      [d.mean(), d.std(), d.min(), d.max()], atol=1e-12)
  # Seeds pair by id: a seed missing from B is left out, not misaligned.
  p2 = paired.paired(a, b[1:], "accuracy")
  assert p2["n"] == 2
  np.testing.assert_allclose(p2["mean"], np.mean([-0.02, 0.1]), atol=1e-12)


def test_experiment_scripts_take_bound_and_target_subsets(monkeypatch):
  from experiments.tschannen import critic_capacity, encoder_arch  # pylint: disable=g-import-not-at-top
  seen = []
  monkeypatch.setattr(common, "start", lambda parser, argv: (
      parser.parse_args(argv), None, None, None))
  monkeypatch.setattr(common, "multiview_program",
                      lambda *a, **k: seen.append((a[3], k.get("target")))
                      or type("P", (), {"scan": True})())
  monkeypatch.setattr(common, "bilinear_critic", lambda *a: None)
  monkeypatch.setattr(common, "run_program", lambda name, *a, **k: [])
  monkeypatch.setattr(common, "report", lambda *a, **k: "")
  critic_capacity.main(["--critics", "bilinear,MLP", "--bounds", "nwj"])
  assert seen == [("nwj", None), ("nwj", None)]
  seen.clear()
  encoder_arch.main(["--encoders", "MLP", "--bounds", "infonce",
                     "--targets", "2,4"])
  assert seen == [("infonce", 2.0), ("infonce", 4.0)]
