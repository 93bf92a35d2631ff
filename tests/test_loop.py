"""Tests for the trainer loop: resume == uninterrupted (bitwise), SIGTERM, non-finite stop, outputs."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mi_jax.training import checkpoint as checkpoint_lib
from mi_jax.training import config as config_lib
from mi_jax.training import loop
from mi_jax.training import metrics as metrics_lib

# A small, fast variant of the default config.
_SMALL = [
    "--config.encoder.kwargs.hidden=(32,)", "--config.encoder.kwargs.out_dim=16",
    "--config.batch_size=64", "--config.steps=12", "--config.log_every=4",
    "--config.eval_every=6", "--config.probe_every=12",
    "--config.checkpoint_every=4", "--config.probe.steps=50",
    "--config.use_mesh=false", "--config.progress_bar=false",
]


def _config(*overrides):
  config = config_lib.load_config()
  return config_lib.apply_overrides(config, _SMALL + list(overrides))


def _params(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _assert_same_params(state_a, state_b):
  pa, pb = _params(state_a), _params(state_b)
  assert len(pa) == len(pb)
  for a, b in zip(pa, pb):
    assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """One uninterrupted 12-step run, shared by several tests."""
  workdir = str(tmp_path_factory.mktemp("full"))
  summary = loop.train(_config(), workdir)
  return workdir, summary


def test_full_run_outputs(full_run):
  workdir, summary = full_run
  assert summary["step"] == 12 and summary["interrupted"] is None
  for name in ("config.json", "metrics.jsonl", "curves.png", "summary.json"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows] == [4, 6, 8, 12]
  assert "train/mi" in rows[0] and "train/grad_norm" in rows[0]
  assert "eval/mi" in rows[1]  # Held-out bound at eval_every.
  assert "probe/linear_acc" in rows[-1]
  assert 0.0 <= summary["probe/linear_acc"] <= 1.0
  assert 0.0 <= summary["probe/pixel_linear_acc"] <= 1.0
  assert np.isfinite(summary["eval/mi"])
  assert checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints")).latest_step() == 12


def test_resume_is_bitwise_identical(full_run, tmp_path):
  _, full = full_run
  workdir = str(tmp_path)
  first = loop.train(_config(), workdir, stop_after_step=6, final_eval=False)
  assert first["step"] == 6 and first["interrupted"] == "stop_after_step"
  resumed = loop.train(_config(), workdir, final_eval=False)
  assert resumed["step"] == 12
  _assert_same_params(full["state"], resumed["state"])
  # Metrics hold each step once after the resume.
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows] == [4, 6, 8, 12]


def _cli_main(argv):
  """`mi-jax` restricted to this module's subcommands (as mi_jax/cli.py runs them)."""
  import argparse  # pylint: disable=g-import-not-at-top
  from mi_jax.training import cli  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="mi-jax")
  cli.register(parser.add_subparsers(dest="command", required=True))
  args, extra = parser.parse_known_args(argv)
  return args.func(args, extra)


def test_mesh_run_resumes_bitwise(tmp_path):
  """A run sharded over 8 devices resumes to the uninterrupted mesh run."""
  assert jax.device_count() == 8
  mesh = ("--config.use_mesh=true", "--config.steps=4",
          "--config.checkpoint_every=2", "--config.eval_every=4")
  full = loop.train(_config(*mesh), str(tmp_path / "a"), final_eval=False)
  leaf = jax.tree.leaves(full["state"].params)[0]
  assert len(leaf.sharding.device_set) == 8  # Replicated over the mesh.
  loop.train(_config(*mesh), str(tmp_path / "b"), stop_after_step=2,
             final_eval=False)
  resumed = loop.train(_config(*mesh), str(tmp_path / "b"), final_eval=False)
  assert resumed["step"] == 4
  _assert_same_params(full["state"], resumed["state"])


def test_eval_cli_prints_probe(full_run, capsys):
  workdir, summary = full_run
  assert _cli_main(["eval", workdir]) == 0
  out = capsys.readouterr().out
  assert "linear probe, learned features" in out
  assert "raw view pixels" in out
  assert f"{100 * summary['probe/linear_acc']:.1f}%" in out


def test_non_finite_stops_and_keeps_last_good(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"at step \d+.*lower learning rate.*grad_clip"):
    loop.train(_config("--config.lr=1e30", "--config.checkpoint_every=1",
                       "--config.log_every=1"), workdir, final_eval=False)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  steps = ckpt.all_steps()
  ckpt.close()
  if steps:  # Every saved state is finite.
    _, _, state = loop.restore_state(workdir)
    assert all(np.isfinite(p).all() for p in _params(state))


def test_bad_config_errors(tmp_path):
  with pytest.raises(ValueError, match="batch_size"):
    loop.train(_config("--config.batch_size=0"), str(tmp_path))
  with pytest.raises(ValueError, match=r"unknown config.method 'nope'.*multiview"):
    loop.build_run(_config("--config.method=nope"))
  with pytest.raises(ValueError, match=r"method file .*nowhere.py.* not found"):
    loop.build_run(_config("--config.method=nowhere.py"))
  with pytest.raises(ValueError, match="critic"):
    loop.build_run(_config("--config.critic.name=nope"))
  with pytest.raises(ValueError, match="divide across the 8 devices"):
    loop.build_run(_config("--config.use_mesh=true", "--config.batch_size=60"))


def _cli_cmd(workdir, *extra):
  return [sys.executable, "-m", "mi_jax.cli", "train", "--workdir", workdir,
          *_SMALL, *extra]


def test_sigterm_saves_and_resume_matches(full_run, tmp_path):
  workdir = str(tmp_path / "sig")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  proc = subprocess.Popen(
      _cli_cmd(workdir, "--config.steps=100000", "--config.checkpoint_every=3",
               "--config.eval_every=100000", "--config.probe_every=100000"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  lines = []
  deadline = time.time() + 120
  for line in proc.stdout:
    lines.append(line)
    if "saved checkpoint" in line:
      proc.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, "".join(lines)
  rest, _ = proc.communicate(timeout=120)
  output = "".join(lines) + rest
  assert proc.returncode == 0, output
  assert "received SIGTERM" in output, output
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  stopped_at = ckpt.latest_step()
  ckpt.close()
  assert stopped_at is not None and stopped_at >= 3
  # Resume to the uninterrupted 12-step run of `full_run` (same parameters
  # and data order; only loop settings differ), or past the stop if later.
  final = 12 if stopped_at < 12 else stopped_at + 2
  resumed = loop.train(_config(f"--config.steps={final}"), workdir,
                       final_eval=False)
  assert resumed["step"] == final
  if final == 12:
    reference = full_run[1]
  else:
    reference = loop.train(_config(f"--config.steps={final}"),
                           str(tmp_path / "ref"), final_eval=False)
  _assert_same_params(reference["state"], resumed["state"])
