"""`mi-jax` command line: a thin dispatcher to the subcommands.

  mi-jax estimate --x x.npy --y y.npy [--bound infonce]   (mi_jax.estimation.cli)
  mi-jax train [--config FILE] [--config.KEY=VALUE ...]  (mi_jax.training.cli)
  mi-jax eval WORKDIR                                     (mi_jax.training.cli)

Each subcommand module provides `register(subparsers)`, which adds its parsers
and sets `func(args, extra_argv) -> int` as the parser default.
"""

import argparse
import importlib
import sys

_COMMAND_MODULES = ("mi_jax.estimation.cli", "mi_jax.training.cli")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="mi-jax",
      description="Estimate and maximize mutual information with neural bounds.")
  subparsers = parser.add_subparsers(dest="command", required=True)
  for module_name in _COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


def main(argv=None) -> int:
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if extra and not getattr(args, "accepts_extra", False):
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  return int(args.func(args, extra) or 0)


if __name__ == "__main__":
  sys.exit(main())
