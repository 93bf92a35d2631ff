"""Convolutional train steps inside `lax.scan` on XLA:CPU: `lax` vs `encoders.conv_op`.

XLA:CPU runs the gradients of `lax.conv_general_dilated`, as JAX emits them,
as naive loop nests when they sit inside a `while` body, so a scan of conv
steps ran several times slower than one call per step; `conv_op` writes the
gradients as canonical convolutions (its docstring). For two encoders built
by the library (DIM's conv encoder on 28x28x1, batch 64; the Tschannen §3.3
ConvNet on 14x28x1 halves, batch 128), each with every `nnx.Conv` computing
with `lax.conv_general_dilated` or with `conv_op.conv_general_dilated`, it
times an SGD step on a sum-of-squares loss of the encoder's outputs (batch
norm in eval mode), one
compiled call per step ("call") and `--scan` steps per call in a `lax.scan`
("scan"), interleaved over `--rounds` rounds (medians). Printed: steps/s and
the ratios scan / call (>= 1 wanted) and conv_op / lax.

Run (CPU):
  python experiments/benchmarks/conv_in_scan.py --rounds 3 --scan 10
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from flax import nnx  # pylint: disable=g-import-not-at-top
import jax
from jax import lax
import jax.numpy as jnp

from mi_jax import encoders
from mi_jax.encoders import conv_op


def _models():
  return {
      "dim_conv": (lambda: encoders.DIMConvEncoder(
          in_channels=1, image_size=28, rngs=nnx.Rngs(0)), (64, 28, 28, 1)),
      "convnet": (lambda: encoders.ConvNet(
          image_shape=(14, 28, 1), rngs=nnx.Rngs(0)), (128, 14, 28, 1)),
  }


def _with_conv(model, conv_fn):
  for _, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Conv):
      node.conv_general_dilated = conv_fn
  return model


def runners(name: str, conv_fn, n_scan: int):
  build, shape = _models()[name]
  model = _with_conv(build(), conv_fn)
  model.eval()  # Batch norm from running statistics: no state to carry.
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jax.random.uniform(jax.random.key(0), shape)

  def loss(p):
    out = nnx.merge(graphdef, p, rest)(x)
    return sum(jnp.sum(o.astype(jnp.float32) ** 2) for o in jax.tree.leaves(out))

  def step(p, _=None):
    return jax.tree.map(lambda a, g: a - 1e-6 * g, p, jax.grad(loss)(p)), None

  one = jax.jit(lambda p: step(p)[0])
  multi = jax.jit(lambda p: lax.scan(step, p, None, length=n_scan)[0])
  box = {"call": params, "scan": params}

  def run_call():
    p = box["call"]
    for _ in range(n_scan):
      p = one(p)
    box["call"] = jax.block_until_ready(p)

  def run_scan():
    box["scan"] = jax.block_until_ready(multi(box["scan"]))

  run_call()
  run_scan()  # Compile.
  return {"call": run_call, "scan": run_scan}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--scan", type=int, default=10)
  parser.add_argument("--models", default="dim_conv,convnet")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{args.scan} steps per timing, medians of {args.rounds} rounds")
  for name in args.models.split(","):
    runs = {conv: runners(name, fn, args.scan) for conv, fn in
            (("lax", lax.conv_general_dilated),
             ("conv_op", conv_op.conv_general_dilated))}
    times = {(c, m): [] for c in runs for m in ("call", "scan")}
    for _ in range(args.rounds):
      for (c, m), ts in times.items():
        t = time.perf_counter()
        runs[c][m]()
        ts.append(time.perf_counter() - t)
    rate = {k: args.scan / statistics.median(v) for k, v in times.items()}
    for c in runs:
      print(f"{name:9s} {c:8s} call {rate[(c, 'call')]:7.2f} steps/s  "
            f"scan {rate[(c, 'scan')]:7.2f} steps/s  "
            f"scan/call {rate[(c, 'scan')] / rate[(c, 'call')]:.2f}x")
    print(f"{name:9s} conv_op/lax in a scan: "
          f"{rate[('conv_op', 'scan')] / rate[('lax', 'scan')]:.2f}x, "
          f"one call per step: "
          f"{rate[('conv_op', 'call')] / rate[('lax', 'call')]:.2f}x")


if __name__ == "__main__":
  main()
