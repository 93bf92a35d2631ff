"""DGI on Citeseer: `dgi_planetoid.py:citeseer` (see that file).

  mi-jax train --config experiments/configs/dgi_citeseer.py --workdir /tmp/mi_jax/dgi_citeseer
  python -m experiments.graphs.seeds --config experiments/configs/dgi_citeseer.py --seeds 10
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "dgi_planetoid", os.path.join(os.path.dirname(__file__), "dgi_planetoid.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
  return _base.get_config("citeseer")
