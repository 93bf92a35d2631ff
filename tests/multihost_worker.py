"""One process of the multi-host test: a few sharded train steps, losses to JSON.

Run as `python tests/multihost_worker.py --num_processes 2 --process_id i
--port P --local_devices 4 --out losses.json`; with `--num_processes 1` it
runs alone (no `jax.distributed`). Every process builds the same model and
the same global batches and feeds only its own rows of each batch.
`tests/test_multihost.py` imports `train_losses` to run the reference.
"""

import argparse
import json
import os
import sys

GLOBAL_BATCH = 32
NUM_STEPS = 4


def train_losses(num_steps: int = NUM_STEPS):
  """Runs `num_steps` sharded steps; returns (losses, param checksum)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import numpy as np
  import optax
  from mi_jax import training, views
  from mi_jax.objectives import multiview
  from mi_jax.training import sharding

  import tiny_models  # pylint: disable=g-import-not-at-top
  model = tiny_models.tiny_multiview_model()
  tx = optax.sgd(0.2, momentum=0.9)  # not Adam: see test_train_step
  graphdef, state = training.init_train_state(model, tx)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  mesh = sharding.make_mesh()
  step = sharding.shard_train_step(
      training.make_train_step(graphdef, tx, loss_fn), mesh)
  state = sharding.replicate(state, mesh)
  rows = sharding.local_batch_slice(GLOBAL_BATCH)
  losses = []
  for t in range(num_steps):
    images = np.asarray(jax.random.uniform(
        jax.random.key(100 + t), (GLOBAL_BATCH, 8, 4, 1)))
    batch = sharding.host_local_to_global({"image": images[rows]}, mesh)
    state, metrics = step(state, batch, jax.random.key(t))
    losses.append(float(metrics["loss"]))
  checksum = float(sum(jnp.sum(jnp.abs(x)) for x in
                       jax.tree.leaves(state.params)))
  return losses, checksum


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--local_devices", type=int, default=8)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  os.environ["XLA_FLAGS"] = (
      f"--xla_force_host_platform_device_count={args.local_devices}")
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  import jax  # pylint: disable=g-import-not-at-top
  from mi_jax.training import distributed
  if args.num_processes > 1:
    distributed.initialize(f"localhost:{args.port}", args.num_processes,
                           args.process_id, timeout_s=60)
  assert jax.device_count() == args.num_processes * args.local_devices
  losses, checksum = train_losses()
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"losses": losses, "checksum": checksum,
                 "process_index": jax.process_index(),
                 "device_count": jax.device_count()}, f)
  distributed.shutdown()


if __name__ == "__main__":
  main()
