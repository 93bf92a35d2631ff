"""InfoGraph on MUTAG: `infograph_tu.py:MUTAG` (see that file).

  mi-jax train --config experiments/configs/infograph_mutag.py --workdir /tmp/mi_jax/infograph_mutag
  python -m experiments.graphs.seeds --config experiments/configs/infograph_mutag.py --seeds 5
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "infograph_tu", os.path.join(os.path.dirname(__file__), "infograph_tu.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  return _base.get_config("MUTAG")
