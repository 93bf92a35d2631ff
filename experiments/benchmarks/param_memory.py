"""Parameter + optimizer bytes per device: replicated vs FSDP, for a ResNet encoder pair.

Builds (abstractly: `nnx.eval_shape` / `jax.eval_shape`, nothing is
allocated) the train state of a multiview model of two ResNet-34 encoders
(BasicBlocks (3, 4, 6, 3) x 64..512, `mi_jax.encoders.ResNet`, 21.3M
parameters each; the library has no bottleneck ResNet-50, whose 25.6M
parameters are the same order) with a 512 x 512 bilinear critic, under Adam
(two moments per parameter), and prints the bytes one device holds with
`mi_jax.training.sharding.state_shardings(params="replicated" | "fsdp")` on
an 8-device mesh and on a 4 x 2 `data x model` mesh.

Run (CPU, seconds):
  python experiments/benchmarks/param_memory.py
"""
import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import optax
from flax import nnx

from mi_jax import critics, encoders, training
from mi_jax.objectives import multiview
from mi_jax.training import sharding


def abstract_state():
  """ShapeDtypeStructs of the train state of the ResNet-34 pair under Adam."""
  def build():
    rngs = nnx.Rngs(0)
    enc = lambda: encoders.ResNet(3, (3, 4, 6, 3), (64, 128, 256, 512),
                                  rngs=rngs)
    model = multiview.MultiviewModel(enc(), enc(),
                                     critics.Bilinear(512, 512, rngs=rngs))
    return training.init_train_state(model, optax.adam(1e-3))[1]
  return jax.eval_shape(build)


def main():
  state = abstract_state()
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  mib = 2.0**20
  print(f"ResNet-34 pair + bilinear critic: {n_params / 1e6:.1f}M parameters, "
        f"Adam state {2 * n_params / 1e6:.1f}M floats")
  for shape, names in (((8,), ("data",)), ((4, 2), ("data", "model"))):
    mesh = sharding.make_mesh(shape=shape, axis_names=names)
    row = []
    for mode in sharding.PARAM_SHARDINGS:
      sh = sharding.state_shardings(state, mesh, params=mode)
      params = sharding.bytes_per_device(state.params, sh.params)
      opt = sharding.bytes_per_device(state.opt_state, sh.opt_state)
      row.append((mode, params, opt))
    (_, rp, ro), (_, fp, fo) = row
    print(f"mesh {dict(mesh.shape)}: per device params + optimizer "
          f"replicated {rp / mib:.1f} + {ro / mib:.1f} MiB, fsdp over "
          f"'{sharding.fsdp_axis(mesh)}' {fp / mib:.1f} + {fo / mib:.1f} MiB "
          f"({(rp + ro) / (fp + fo):.2f}x less)")


if __name__ == "__main__":
  main()
