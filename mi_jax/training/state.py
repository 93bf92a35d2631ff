"""TrainState: the pytree a train step carries, and how to build it from a model.

A Flax NNX model is split once into a static `graphdef` and a pure pytree
`TrainState(step, params, rest, opt_state)`: `params` holds the `nnx.Param`
variables (the only ones differentiated and updated by the optimizer), `rest`
holds every other variable (BatchNorm statistics, RNG counts; may be empty).
The step functions in `mi_jax.training.step` merge them back inside jit.
"""

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx


class TrainState(flax.struct.PyTreeNode):
  """Everything a run carries between steps (a pytree; all leaves are arrays).

  Attributes:
    step: int32 scalar, number of applied optimizer updates.
    params: `nnx.State` of the model's `nnx.Param` variables.
    rest: `nnx.State` of all other variables (e.g. BatchNorm statistics).
    opt_state: the optax state of `tx.init(params)`.
  """
  step: jax.Array
  params: Any
  rest: Any
  opt_state: Any


def split_model(model: nnx.Module):
  """Splits a model into `(graphdef, params, rest)` with `nnx.split(model, nnx.Param, ...)`."""
  return nnx.split(model, nnx.Param, ...)


def merge_model(graphdef, params, rest) -> nnx.Module:
  """Inverse of `split_model`: a fresh module from its graphdef and states.

  The variables are copied (`copy=True`), so the module may be mutated (e.g.
  BatchNorm statistics) inside a transform other than the one that built the
  states, such as `jax.value_and_grad` inside `jax.jit`.
  """
  return nnx.merge(graphdef, params, rest, copy=True)


def init_train_state(model: nnx.Module, tx: optax.GradientTransformation):
  """Builds `(graphdef, TrainState)` from a model and an optax optimizer.

  The model is split with `nnx.split(model, nnx.Param, ...)`; the optimizer
  state is `tx.init(params)` and `step` starts at 0.
  """
  graphdef, params, rest = split_model(model)
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params, rest=rest,
      opt_state=tx.init(params))
  return graphdef, state


def init_train_states(
    model_fn: Callable[[jax.Array], nnx.Module],
    tx: optax.GradientTransformation,
    keys_N: jax.Array,
):
  """Builds `N` independent train states, one per seed key, stacked on axis 0.

  `model_fn(key) -> model` builds one model from a PRNG key (e.g.
  `lambda k: MyModel(rngs=nnx.Rngs(k))`). The init is `jax.vmap`ped over
  `keys_N`, so every leaf of the returned state has a leading axis of size N,
  as `vmap_over_seeds` expects. Returns `(graphdef, stacked_state)`; the
  graphdef is the same for every seed.
  """
  graphdefs = []

  def init_one(key):
    graphdef, state = init_train_state(model_fn(key), tx)
    graphdefs.append(graphdef)
    return state

  states = jax.vmap(init_one)(keys_N)
  return graphdefs[0], states


def unstack_state(states, index: int):
  """Selects seed `index` from a stacked state (stacked by `init_train_states`)."""
  return jax.tree.map(lambda x: x[index], states)
