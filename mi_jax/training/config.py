"""Config files and command-line overrides: configs are code (big_vision style).

  load_config("experiments/configs/multiview_mnist.py")          # calls get_config()
  load_config("experiments/configs/multiview_mnist.py:arg")      # get_config("arg")
  apply_overrides(config, ["--config.lr=3e-4", "--config.encoder.name", "mlp"])
  save_config(config, workdir) / load_saved_config(workdir)       # workdir/config.json

Override values are parsed by the type of the field they replace (bool, int,
float, str, tuple/list, dict); an unknown key raises a `ValueError` that lists
the closest existing keys.
"""

import ast
import contextlib
import difflib
import importlib.util
import json
import os
import pathlib
from typing import Any, Sequence

import ml_collections

CONFIG_FILENAME = "config.json"
_PREFIX = "--config."


def default_config_path() -> str:
  """Path of the default config, `experiments/configs/multiview_mnist.py`."""
  root = pathlib.Path(__file__).resolve().parents[2]
  return str(root / "experiments" / "configs" / "multiview_mnist.py")


def load_config(path: str | None = None) -> ml_collections.ConfigDict:
  """Imports a config file and returns its `get_config([arg])`.

  `path` may end in `:arg`, passed to `get_config` as a string. None loads the
  default config.
  """
  path = path or default_config_path()
  arg = None
  if ":" in os.path.basename(path):
    path, arg = path.rsplit(":", 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"config file {path!r} not found (configs live under experiments/configs/, "
        f"e.g. {default_config_path()})")
  name = "mi_jax_config_" + pathlib.Path(path).stem
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config()")
  config = module.get_config() if arg is None else module.get_config(arg)
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(config)
  return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted key of a nested ConfigDict (inner nodes included)."""
  keys = []
  for key, value in config.items():
    dotted = prefix + key
    keys.append(dotted)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, dotted + "."))
  return keys


def _parse_bool(text: str) -> bool:
  low = text.strip().lower()
  if low in ("1", "true", "t", "yes", "y", "on"):
    return True
  if low in ("0", "false", "f", "no", "n", "off"):
    return False
  raise ValueError(f"expected a boolean (true/false), got {text!r}")


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _parse_sequence(text: str, old: Sequence[Any], kind: type) -> Any:
  value = _literal(text)
  if isinstance(value, (int, float, str, bool)) or value is None:
    value = [] if text.strip() == "" else [_literal(p.strip()) for p in text.split(",")]
  if not isinstance(value, (list, tuple)):
    raise ValueError(f"expected a sequence like 1,2,3 or (1, 2, 3), got {text!r}")
  if old:
    elem_type = type(old[0])
    value = [parse_value(str(v), elem_type) if not isinstance(v, elem_type) else v
             for v in value]
  return kind(value)


def parse_value(text: str, kind: type, old: Any = None) -> Any:
  """Parses `text` as a value of type `kind` (the type of the replaced field)."""
  if kind is bool:
    return _parse_bool(text)
  if kind is int:
    try:
      return int(text)
    except ValueError:
      pass
    try:
      as_float = float(text)  # accept 1e4
    except ValueError:
      as_float = 0.5
    if not as_float.is_integer():
      raise ValueError(f"expected an integer, got {text!r}")
    return int(as_float)
  if kind is float:
    try:
      return float(text)
    except ValueError:
      raise ValueError(f"expected a number, got {text!r}") from None
  if kind is str:
    return text
  if kind in (tuple, list):
    return _parse_sequence(text, old or (), kind)
  if kind in (dict, ml_collections.ConfigDict):
    value = _literal(text)
    if not isinstance(value, dict):
      raise ValueError(f"expected a dict literal like {{'a': 1}}, got {text!r}")
    return ml_collections.ConfigDict(value)
  # None-valued fields (e.g. data_dir=None): Python literal, else the string.
  if text.strip().lower() in ("none", "null"):
    return None
  return _literal(text)


def _split_argv(argv: Sequence[str]) -> list[tuple[str, str]]:
  pairs, i = [], 0
  argv = list(argv)
  while i < len(argv):
    arg = argv[i]
    if not arg.startswith(_PREFIX):
      raise ValueError(
          f"unrecognized argument {arg!r}: overrides look like --config.KEY=VALUE")
    body = arg[len(_PREFIX):]
    if "=" in body:
      key, text = body.split("=", 1)
      i += 1
    else:
      if i + 1 >= len(argv):
        raise ValueError(f"{arg} needs a value: {arg}=VALUE")
      key, text = body, argv[i + 1]
      i += 2
    pairs.append((key, text))
  return pairs


def set_value(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets dotted `key` of `config` from its command-line text."""
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts):
    if (depth == len(parts) - 1 and isinstance(node, ml_collections.ConfigDict)
        and part not in node and parts[depth - 1:depth] == ["kwargs"]):
      # Free-form keyword arguments (encoder/critic/bound kwargs) accept new keys.
      with node.unlocked() if node.is_locked else contextlib.nullcontext():
        node[part] = parse_value(text, type(None))
      return
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      close = difflib.get_close_matches(key, flat_keys(config), n=5, cutoff=0.5)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      raise ValueError(
          f"unknown config key {key!r}{hint} (keys: {', '.join(sorted(config.keys()))})")
    if depth < len(parts) - 1:
      node = node[part]
  last = parts[-1]
  old = node[last]
  kind = node.get_type(last)
  if isinstance(old, ml_collections.ConfigDict):
    kind = ml_collections.ConfigDict
  try:
    value = parse_value(text, kind, old)
  except ValueError as e:
    raise ValueError(f"--config.{key}={text}: {e}") from None
  with node.unlocked() if node.is_locked else contextlib.nullcontext():
    node[last] = value


def apply_overrides(config: ml_collections.ConfigDict,
                    argv: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies `--config.KEY=VALUE` (or `--config.KEY VALUE`) overrides in place."""
  for key, text in _split_argv(argv):
    set_value(config, key, text)
  return config


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes the resolved config to `workdir/config.json`; returns the path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILENAME)
  with open(path, "w") as f:
    f.write(config.to_json(indent=2, sort_keys=True))
    f.write("\n")
  return path


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads `workdir/config.json` back into a ConfigDict."""
  path = os.path.join(workdir, CONFIG_FILENAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{path} not found: is {workdir!r} the workdir of a `mi-jax train` run?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))
