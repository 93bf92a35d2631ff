"""Encoders: Flax NNX modules mapping a view to a representation, `enc(x) -> z`.

Every encoder has an int attribute `out_dim`, the size of `z` per example.
Public classes are re-exported here; `make(name, *, rngs, **kwargs)` builds one
by name from `_REGISTRY`. To add an encoder, import its class below and add
one entry to `_REGISTRY`.
"""

from flax import nnx

from mi_jax.encoders.context import GRUContext
from mi_jax.encoders.context import RowCausalConvContext
from mi_jax.encoders.conv1d import Conv1DEncoder
from mi_jax.encoders.convnet import ConvNet
from mi_jax.encoders.diagnostics import jacobian_log_condition_number
from mi_jax.encoders.diagnostics import jacobian_log_condition_numbers
from mi_jax.encoders.dim_conv import DIMConvEncoder
from mi_jax.encoders.gnn import GCN, GIN, SparseFeatures
from mi_jax.encoders.mlp import MLP
from mi_jax.encoders.realnvp import RealNVP
from mi_jax.encoders.resmlp import ResMLP
from mi_jax.encoders.resnet import BasicBlock
from mi_jax.encoders.resnet import ResNet

_REGISTRY = {
    "mlp": MLP,
    "convnet": ConvNet,
    "dim_conv": DIMConvEncoder,
    "realnvp": RealNVP,
    "resmlp": ResMLP,
    "resnet": ResNet,
    "gcn": GCN,
    "gin": GIN,
    "conv1d": Conv1DEncoder,
    "gru_context": GRUContext,
    "row_causal_context": RowCausalConvContext,
}


def names() -> tuple[str, ...]:
  """Returns the registered encoder names, sorted."""
  return tuple(sorted(_REGISTRY))


def register(name: str, cls) -> None:
  """Adds `cls` to the registry under `name` (encoders defined elsewhere)."""
  if name in _REGISTRY and _REGISTRY[name] is not cls:
    raise ValueError(f"Encoder name {name!r} is already registered.")
  _REGISTRY[name] = cls


def make(name: str, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds the encoder registered as `name` with `cls(**kwargs, rngs=rngs)`.

  Raises:
    ValueError: if `name` is not registered; the message lists known names.
  """
  try:
    cls = _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"Unknown encoder {name!r}; known encoders: {sorted(_REGISTRY)}"
    ) from None
  return cls(**kwargs, rngs=rngs)


__all__ = [
    "BasicBlock", "Conv1DEncoder", "ConvNet", "GCN", "GIN", "GRUContext", "MLP",
    "RealNVP", "ResMLP", "ResNet", "SparseFeatures",
    "jacobian_log_condition_number", "jacobian_log_condition_numbers", "make",
    "names", "register", "RowCausalConvContext",
]
