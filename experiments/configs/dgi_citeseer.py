"""DGI on Citeseer: `dgi_planetoid.py:citeseer` (see that file).

  mi-jax train --config experiments/configs/dgi_citeseer.py --workdir /tmp/mi_jax/dgi_citeseer
  python -m experiments.graphs.seeds --config experiments/configs/dgi_citeseer.py --seeds 10
"""
import os
import runpy

_BASE = runpy.run_path(os.path.join(os.path.dirname(__file__), "dgi_planetoid.py"))


def get_config():
  return _BASE["get_config"]("citeseer")
