"""The plug-in contract: a method defined in tests/toy_method.py (outside the package)
trains with `mi-jax train --config tests/toy_config.py`, resumes bitwise, and
re-evaluates with `mi-jax eval WORKDIR` from config.json alone."""

import json
import math
import os
import pathlib
import re

import jax
import numpy as np
import pytest

from mi_jax import cli
from mi_jax.training import loop

CONFIG = str(pathlib.Path(__file__).with_name("toy_config.py"))
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _params(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_toy_method_trains_resumes_and_reevaluates(tmp_path, capsys):
  from mi_jax.training import config as config_lib  # pylint: disable=g-import-not-at-top
  reference = loop.train(config_lib.load_config(CONFIG), str(tmp_path / "ref"),
                         final_eval=False)
  workdir = str(tmp_path / "run")
  # Trains to step 10 (a complete run of 10 steps), then resumes to 20.
  assert cli.main(["train", "--config", CONFIG, "--workdir", workdir,
                   "--config.steps=10"]) == 0
  assert cli.main(["train", "--config", CONFIG, "--workdir", workdir]) == 0
  out = capsys.readouterr().out
  assert "resumed from" in out and "at step 10" in out
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["step"] == 20
  _, step, state = loop.restore_state(workdir)
  assert step == 20
  for a, b in zip(_params(reference["state"]), _params(state)):
    assert np.array_equal(a, b)  # Resumed == uninterrupted, bitwise.

  # InfoNCE on batches of 32 is at most log 32; I(x; y) = 1.66 nats here.
  assert 0.3 < summary["eval/mi"] <= math.log(32)
  assert summary["eval/bound"] == summary["eval/mi"]
  # sign(y_0) from x: Bayes accuracy 1 - arccos(0.9) / pi = 0.856; 256 test
  # points (standard error 0.022).
  bayes = 1 - math.acos(0.9) / math.pi
  for key in ("probe/linear_acc", "probe/raw_linear_acc",
              "probe/random_linear_acc"):
    assert abs(summary[key] - bayes) < 0.08, (key, summary[key])
  assert 0.6 < summary["probe/knn_acc"] <= 1.0

  # `mi-jax eval` rebuilds the method from config.json alone: same numbers.
  results = loop.evaluate(workdir)
  for key in ("eval/mi", "probe/linear_acc", "probe/knn_acc",
              "probe/raw_linear_acc", "probe/random_linear_acc"):
    assert results[key] == summary[key], key
  assert cli.main(["eval", workdir]) == 0
  assert f"probe/linear_acc: {summary['probe/linear_acc']:.4f}" in (
      capsys.readouterr().out)


def test_engine_names_no_method():
  """mi_jax/training/*.py names no method (the default config's path aside)."""
  hits = []
  for path in sorted((ROOT / "mi_jax" / "training").glob("*.py")):
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if re.search(r"\bdim\b|DIM|multiview(?!_mnist)", line):
        hits.append(f"{path.name}:{i}: {line.strip()}")
  assert not hits, "\n".join(hits)


def test_bad_method_module_is_refused(tmp_path):
  from mi_jax.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from mi_jax.training import run as run_lib  # pylint: disable=g-import-not-at-top
  bad = tmp_path / "no_build.py"
  bad.write_text("x = 1\n")
  config = config_lib.load_config(CONFIG)
  config.method = str(bad)
  with pytest.raises(ValueError, match=r"has no build\(config, \*, seed\)"):
    run_lib.build_run(config)
