"""`mi-jax estimate`: the MI between two sample files, from the command line.

  mi-jax estimate --x x.npy --y y.npy [--bound B] [--critic C] [--steps S]
                  [--batch-size K] [--method neural|gaussian|ksg]
                  [--preprocess standardize|gaussianize|canonical|none]

Prints "estimate ± standard error nats" plus every flag with its advice on
one line; an implausible read-out (diverged, far below zero, held-out above
training, exploding variance) also gets a warning on stderr.
Files: .npy (a 2-D array [n_samples, dim]) or .csv/.txt (numbers, one sample
per row). Exit code 0 on success, 2 on bad input.
"""

import argparse
import os
import sys

import numpy as np


def load_samples(path: str) -> np.ndarray:
  """Loads a sample matrix from .npy, .npz (its only array), .csv or .txt."""
  a = _load(path)
  if np.ndim(a) == 1:
    raise ValueError(
        f"{path} holds a 1-D array of shape {np.shape(a)}; samples must be "
        f"2-D [n_samples, dim]: save a scalar variable as "
        f"np.save(path, a.reshape(-1, 1)).")
  return a


def _load(path: str):
  if not os.path.exists(path):
    raise ValueError(f"no such file: {path}")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".npy":
    return np.load(path, allow_pickle=False)
  if ext == ".npz":
    with np.load(path, allow_pickle=False) as archive:
      if len(archive.files) != 1:
        raise ValueError(f"{path} holds {len(archive.files)} arrays "
                         f"({archive.files}); save one array per file.")
      return archive[archive.files[0]]
  if ext in (".csv", ".txt", ".tsv"):
    delimiter = "," if ext == ".csv" else None
    return np.loadtxt(path, delimiter=delimiter, ndmin=2)
  raise ValueError(f"unsupported file type {ext!r} for {path}; use .npy, "
                   ".npz, .csv or .txt.")


def run(args: argparse.Namespace, extra_argv: list[str]) -> int:
  """Loads the two files, estimates, prints one line; returns the exit code."""
  del extra_argv
  from mi_jax import estimation  # pylint: disable=g-import-not-at-top
  try:
    x, y = load_samples(args.x), load_samples(args.y)
    if args.method == "gaussian":
      print(f"{estimation.gaussian_mi(x, y):.4f} nats (Gaussian/CCA)")
      return 0
    if args.method == "ksg":
      print(f"{estimation.ksg_mi(x, y, k=args.k):.4f} nats (KSG, k={args.k})")
      return 0
    # Unset options take estimate()'s defaults.
    kwargs = {k: v for k, v in dict(
        bound=args.bound, critic=args.critic, batch_size=args.batch_size,
        steps=args.steps, lr=args.lr, seed=args.seed, holdout=args.holdout,
        preprocess=args.preprocess, negatives=args.negatives).items()
              if v is not None}
    if args.clip is not None:
      kwargs["bound_options"] = {"clip": args.clip}
    result = estimation.estimate(x, y, **kwargs)
  except ValueError as e:
    print(f"mi-jax estimate: error: {e}", file=sys.stderr)
    return 2
  print(result)  # value ± SE, then every flag with its advice
  if not result.plausible:
    print("mi-jax estimate: warning: implausible read-out (flags: "
          f"{', '.join(result.flags)}); do not report this number",
          file=sys.stderr)
  if args.verbose:
    print(f"bound={result.bound} critic={result.critic} steps={result.steps} "
          f"stopped_early={result.stopped_early} batch_size={result.batch_size} "
          f"n_train={result.n_train} n_heldout={result.n_heldout} "
          f"wall_time={result.wall_time:.2f}s")
  return 0


def register(subparsers) -> None:
  """Adds the `estimate` subcommand to the `mi-jax` dispatcher."""
  p = subparsers.add_parser(
      "estimate", help="estimate the mutual information between two samples",
      description="Estimate I(X; Y) in nats from paired samples (row i of X "
      "goes with row i of Y). The neural estimate is read out on held-out "
      "samples; the standard error is printed after '±'.")
  p.add_argument("--x", required=True, help="samples of X: .npy/.npz/.csv/.txt")
  p.add_argument("--y", required=True, help="samples of Y, same number of rows")
  p.add_argument("--method", default="neural",
                 choices=("neural", "gaussian", "ksg"),
                 help="neural bound (default), Gaussian/CCA closed form, or KSG")
  # Defaults (None): those of mi_jax.estimate.
  p.add_argument("--bound", default=None,
                 help="infonce, nwj, tuba, dv, mine, jsd, interpolated, smile")
  p.add_argument("--critic", default=None,
                 help="separable, concat, bilinear, inner_product")
  p.add_argument("--negatives", type=int, default=None,
                 help="negatives per row in training (default: estimate's)")
  p.add_argument("--clip", type=float, default=None,
                 help="SMILE clip tau (with --bound smile)")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--batch-size", type=int, default=None)
  p.add_argument("--lr", type=float, default=None)
  p.add_argument("--seed", type=int, default=None)
  p.add_argument("--holdout", type=float, default=None,
                 help="fraction held out for validation + test read-out")
  p.add_argument("--preprocess", default=None,
                 choices=("standardize", "gaussianize", "canonical", "none"),
                 help="per-column map fitted on the training split")
  p.add_argument("--k", type=int, default=3, help="KSG neighbours")
  p.add_argument("-v", "--verbose", action="store_true")
  p.set_defaults(func=run, accepts_extra=False)
