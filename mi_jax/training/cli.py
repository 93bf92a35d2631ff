"""`mi-jax train` and `mi-jax eval`: the command line of the trainer.

  mi-jax train [--config FILE[:ARG]] [--workdir DIR] [--config.KEY=VALUE ...]
               [--distributed | --coordinator_address HOST:PORT
                --num_processes N --process_id I]
  mi-jax eval WORKDIR

`register(subparsers)` adds both to the `mi-jax` dispatcher (mi_jax/cli.py).
`train` resumes from the latest checkpoint of its workdir; `eval` rebuilds the
run from `WORKDIR/config.json` and evaluates its latest checkpoint.
"""

import argparse
import os
import sys

DEFAULT_WORKDIR = os.path.join("runs", "multiview_mnist")


def _train(args: argparse.Namespace, extra_argv: list[str]) -> int:
  """Loads the config, applies overrides, trains; exit code 0 / 1 / 2."""
  from mi_jax.training import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config(args.config)
    config_lib.apply_overrides(config, extra_argv)
  except (ValueError, FileNotFoundError) as e:
    print(f"mi-jax train: error: {e}", file=sys.stderr)
    return 2
  if args.distributed or args.coordinator_address:
    from mi_jax.training import distributed  # pylint: disable=g-import-not-at-top
    distributed.initialize(args.coordinator_address, args.num_processes,
                           args.process_id)
  from mi_jax.training import loop  # pylint: disable=g-import-not-at-top
  print(f"mi-jax train: workdir {os.path.abspath(args.workdir)}", flush=True)
  try:
    summary = loop.train(config, args.workdir)
  except loop.NonFiniteLossError as e:
    print(f"mi-jax train: error: {e}", file=sys.stderr)
    return 1
  except (ValueError, FileNotFoundError) as e:
    print(f"mi-jax train: error: {e}", file=sys.stderr)
    return 2
  except KeyError as e:  # A field the method needs is not in the config.
    print(f"mi-jax train: error: missing config field: {e}", file=sys.stderr)
    return 2
  print(f"mi-jax train: {summary['step']} steps, {summary['steps_per_s']:.1f} "
        f"steps/s this session, {summary['wall_s']:.1f} s", flush=True)
  return 0


def _eval(args: argparse.Namespace, extra_argv: list[str]) -> int:
  """Evaluates the latest checkpoint of a workdir."""
  del extra_argv
  from mi_jax.training import loop  # pylint: disable=g-import-not-at-top
  try:
    loop.evaluate(args.workdir)
  except (ValueError, FileNotFoundError) as e:
    print(f"mi-jax eval: error: {e}", file=sys.stderr)
    return 2
  return 0


def register(subparsers) -> None:
  """Adds the `train` and `eval` subcommands to the `mi-jax` dispatcher."""
  train = subparsers.add_parser(
      "train", help="train a representation by maximizing an MI bound",
      description="Train (or resume) a run. Any field of the config can be "
      "overridden with --config.KEY=VALUE (dotted keys for nested fields).")
  train.add_argument(
      "--config", default=None,
      help="config file (a .py with get_config()); default "
      "experiments/configs/multiview_mnist.py")
  train.add_argument(
      "--workdir", default=DEFAULT_WORKDIR,
      help=f"run folder: checkpoints, metrics, config.json (default {DEFAULT_WORKDIR}); "
      "an existing run there is resumed")
  multi = train.add_argument_group(
      "multi-host", "join a multi-process job with jax.distributed.initialize "
      "before training (one `mi-jax train` per host, same flags and workdir)")
  multi.add_argument(
      "--distributed", action="store_true",
      help="initialize jax.distributed from the environment (TPU pods, SLURM; "
      "or $MI_JAX_COORDINATOR, $MI_JAX_NUM_PROCESSES, $MI_JAX_PROCESS_ID)")
  multi.add_argument("--coordinator_address", default=None,
                     help="host:port of process 0 (implies --distributed)")
  multi.add_argument("--num_processes", type=int, default=None)
  multi.add_argument("--process_id", type=int, default=None)
  train.set_defaults(func=_train, accepts_extra=True)

  evaluate = subparsers.add_parser(
      "eval", help="evaluate the latest checkpoint of a run",
      description="The held-out bound and the method's evaluations (e.g. "
      "linear-probe and kNN accuracy beside a raw-input baseline) of WORKDIR's "
      "latest checkpoint; the method is imported from WORKDIR/config.json.")
  evaluate.add_argument("workdir", help="the workdir of a `mi-jax train` run")
  evaluate.set_defaults(func=_eval, accepts_extra=False)
