"""InfoGraph on MUTAG: `infograph_tu.py:MUTAG` (see that file).

  mi-jax train --config experiments/configs/infograph_mutag.py --workdir /tmp/mi_jax/infograph_mutag
  python -m experiments.graphs.seeds --config experiments/configs/infograph_mutag.py --seeds 5
"""
import os
import runpy

_BASE = runpy.run_path(os.path.join(os.path.dirname(__file__), "infograph_tu.py"))


def get_config():
  return _BASE["get_config"]("MUTAG")
