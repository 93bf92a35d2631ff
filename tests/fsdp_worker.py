"""A run of sharded-parameter (FSDP) train steps that saves / resumes Orbax checkpoints.

`python tests/fsdp_worker.py --devices N --workdir W --start S --stop T
--out losses.json`: on N fake CPU devices, restores step S from `W` (unless
S == 0), runs steps S..T-1 with parameters + optimizer state sharded over the
mesh, saves step T and writes the losses and the final params (npz) to
`--out`. `tests/test_fsdp.py` runs it at 8, 4 and 1 devices in a row and
imports `setup` / `batch` for its in-process reference.
"""

import argparse
import json
import os
import sys

GLOBAL_BATCH = 16


def setup(tx=None):
  """(graphdef, tx, state, step) of the tiny BN multiview model (default SGD+momentum)."""
  import optax  # pylint: disable=g-import-not-at-top
  from mi_jax import training, views
  from mi_jax.objectives import multiview

  import tiny_models  # pylint: disable=g-import-not-at-top
  # Adam amplifies rounding differences across device counts.
  tx = optax.sgd(0.2, momentum=0.9) if tx is None else tx
  graphdef, state = training.init_train_state(
      tiny_models.tiny_multiview_model(), tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  return graphdef, tx, state, training.make_train_step(graphdef, tx, loss_fn)


def batch(t: int):
  """The global batch of step t (the same on every device count)."""
  import jax  # pylint: disable=g-import-not-at-top
  return {"image": jax.random.uniform(jax.random.key(100 + t),
                                      (GLOBAL_BATCH, 8, 4, 1))}


def run(devices: int, workdir: str, start: int, stop: int):
  """Steps start..stop-1 on `devices` devices with FSDP; returns (losses, params)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np
  from mi_jax.training import checkpoint, sharding

  assert jax.device_count() == devices, jax.devices()
  _, _, state, step = setup()
  mesh = sharding.make_mesh()
  shardings = sharding.state_shardings(state, mesh, params="fsdp", min_size=64)
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  if start:
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        state, shardings)
    restored_step, state, _ = ckpt.restore_latest(abstract)
    assert restored_step == start, (restored_step, start)
  else:
    state = sharding.place(state, shardings)
  sstep = sharding.shard_train_step(step, mesh, state_sharding=shardings)
  losses = []
  for t in range(start, stop):
    state, metrics = sstep(state, sharding.shard_batch(batch(t), mesh),
                           jax.random.key(t))
    losses.append(float(metrics["loss"]))
  ckpt.save(stop, state, {"step": stop})
  ckpt.close()
  params = {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
  return losses, params


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--devices", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--start", type=int, required=True)
  parser.add_argument("--stop", type=int, required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = (
      f"--xla_force_host_platform_device_count={args.devices}")
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import numpy as np  # pylint: disable=g-import-not-at-top
  losses, params = run(args.devices, args.workdir, args.start, args.stop)
  np.savez(args.out + ".npz", **params)
  with open(args.out, "w") as f:
    json.dump({"losses": losses}, f)


if __name__ == "__main__":
  main()
