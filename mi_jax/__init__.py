"""mi_jax: mutual information estimation and maximization with neural variational bounds.

Layers (see docs/architecture.md): bounds -> critics -> encoders -> objectives ->
training; data, evaluation and estimation beside them.
Submodules are imported lazily so that `import mi_jax` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "bounds", "critics", "encoders", "views", "objectives", "training", "data",
    "evaluation", "estimation",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"mi_jax.{name}")
  if name in ("estimate",):
    return getattr(importlib.import_module("mi_jax.estimation"), name)
  raise AttributeError(f"module 'mi_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES) + ["estimate"])
