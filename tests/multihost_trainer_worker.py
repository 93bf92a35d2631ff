"""One process of the multi-host trainer test: `loop.train` of a small config.

`python tests/multihost_trainer_worker.py --process_id i --port P --workdir W
[--config.KEY=VALUE ...]`: joins a 2-process job (4 fake CPU devices each)
through `mi_jax.training.distributed.initialize` and trains the default config
with `tests/test_multihost_trainer.py`'s small overrides into the shared
workdir `W` (metrics from process 0, checkpoints written by both).
"""

import argparse
import os
import sys


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--process_id", type=int, required=True)
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  args, overrides = parser.parse_known_args()
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  import jax  # pylint: disable=g-import-not-at-top
  from mi_jax.training import config as config_lib
  from mi_jax.training import distributed, loop
  distributed.initialize(f"localhost:{args.port}", 2, args.process_id,
                         timeout_s=60)
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  config = config_lib.apply_overrides(config_lib.load_config(), overrides)
  summary = loop.train(config, args.workdir, final_eval=False)
  assert summary["step"] == config.steps, summary
  distributed.shutdown()


if __name__ == "__main__":
  main()
