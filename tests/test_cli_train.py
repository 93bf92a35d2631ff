"""Tests for config loading / `--config.KEY=VALUE` overrides and the `mi-jax train/eval` CLI."""

import ast
import json

import pytest

from mi_jax.training import config as config_lib


def test_default_config_fields():
  c = config_lib.load_config()
  assert c.dataset == "mnist5k" and c.views == "top_bottom"
  assert c.critic.name == "bilinear" and c.bound.name == "infonce"
  assert c.batch_size == 128 and c.lr == 1e-4
  assert tuple(c.encoder.kwargs.hidden) == (300, 300)
  assert c.encoder.kwargs.out_dim == 100
  with open(config_lib.default_config_path()) as f:
    doc = ast.get_docstring(ast.parse(f.read()))
  assert "mi-jax train --config experiments/configs/multiview_mnist.py" in doc


def test_overrides_parse_by_field_type():
  c = config_lib.load_config()
  config_lib.apply_overrides(c, [
      "--config.lr=3e-4", "--config.steps=1e3", "--config.use_mesh=false",
      "--config.encoder.kwargs.hidden=512,256", "--config.bound.name", "nwj",
      "--config.data_dir=/tmp/data", "--config.bound.kwargs.alpha=0.5"])
  assert c.lr == 3e-4 and isinstance(c.lr, float)
  assert c.steps == 1000 and isinstance(c.steps, int)
  assert c.use_mesh is False
  assert c.encoder.kwargs.hidden == (512, 256)
  assert c.bound.name == "nwj"
  assert c.data_dir == "/tmp/data"
  assert c.bound.kwargs.alpha == 0.5


def test_unknown_key_lists_close_matches():
  c = config_lib.load_config()
  with pytest.raises(ValueError, match=r"unknown config key 'encoder.nmae'.*encoder.name"):
    config_lib.apply_overrides(c, ["--config.encoder.nmae=mlp"])
  with pytest.raises(ValueError, match=r"batch_size"):
    config_lib.apply_overrides(c, ["--config.batch_sise=64"])


def test_bad_values_are_clear():
  c = config_lib.load_config()
  with pytest.raises(ValueError, match=r"--config.steps=abc: expected an integer"):
    config_lib.apply_overrides(c, ["--config.steps=abc"])
  with pytest.raises(ValueError, match=r"expected a boolean"):
    config_lib.apply_overrides(c, ["--config.use_mesh=maybe"])
  with pytest.raises(ValueError, match=r"overrides look like"):
    config_lib.apply_overrides(c, ["--lr=1"])


def test_config_json_round_trip(tmp_path):
  c = config_lib.load_config()
  path = config_lib.save_config(c, str(tmp_path))
  assert json.load(open(path))["batch_size"] == 128
  back = config_lib.load_saved_config(str(tmp_path))
  assert back.encoder.kwargs.out_dim == 100 and back.lr == c.lr
  with pytest.raises(FileNotFoundError, match="mi-jax train"):
    config_lib.load_saved_config(str(tmp_path / "nowhere"))


def _cli_main(argv):
  """`mi-jax` restricted to this module's subcommands (as mi_jax/cli.py runs them)."""
  import argparse  # pylint: disable=g-import-not-at-top
  from mi_jax.training import cli  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="mi-jax")
  cli.register(parser.add_subparsers(dest="command", required=True))
  args, extra = parser.parse_known_args(argv)
  assert args.accepts_extra == (args.command == "train")
  return args.func(args, extra)


def test_train_cli_reports_config_errors(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  assert _cli_main(["train", "--workdir", workdir, "--config.stepz=5"]) == 2
  err = capsys.readouterr().err
  assert "unknown config key 'stepz'" in err and "steps" in err
  assert _cli_main(["train", "--workdir", workdir, "--config",
                    str(tmp_path / "missing.py")]) == 2
  assert "not found" in capsys.readouterr().err
  assert _cli_main(["eval", str(tmp_path / "nowhere")]) == 2
  assert "config.json" in capsys.readouterr().err
