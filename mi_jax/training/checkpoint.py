"""Orbax checkpoints of a run: train state + data-iterator state, in `workdir/checkpoints`.

One checkpoint per step directory, holding two items:
  `state`     the TrainState pytree (StandardSave / StandardRestore),
  `iterator`  the BatchIterator's `get_state()` dict (JsonSave / JsonRestore).
The step is the directory name. `Checkpointer.restore_latest(abstract_state)`
restores into the shapes, dtypes and shardings of `abstract_state`, so a run
resumed on a mesh gets its arrays back with the mesh's shardings.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def abstract_like(state: Any) -> Any:
  """The `jax.ShapeDtypeStruct` tree (with shardings) of a concrete state."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _to_jsonable(obj: Any) -> Any:
  """Iterator states may hold NumPy scalars/arrays; JSON needs plain Python."""
  if isinstance(obj, dict):
    return {str(k): _to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


class Checkpointer:
  """Saves and restores (state, iterator_state) at integer steps; keeps the last N.

  Usage:
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
    ckpt.save(step, state, iterator.get_state())
    step, state, it_state = ckpt.restore_latest(abstract_like(state))
    ckpt.close()
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "iterator"))

  def latest_step(self) -> int | None:
    """The newest saved step, or None when the directory holds no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every saved step, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, iterator_state: dict | None,
           *, force: bool = True) -> bool:
    """Saves `state` and `iterator_state` as step `step` (no-op if already saved)."""
    step = int(step)
    if step in self._manager.all_steps():
      return False
    return self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            iterator=ocp.args.JsonSave(_to_jsonable(iterator_state or {}))),
        force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores (state, iterator_state) of `step` into the layout of `abstract_state`."""
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            iterator=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["iterator"] or {})

  def restore_latest(self, abstract_state: Any
                     ) -> tuple[int | None, Any, dict | None]:
    """(step, state, iterator_state) of the newest checkpoint, or (None, None, None)."""
    step = self.latest_step()
    if step is None:
      return None, None, None
    state, iterator_state = self.restore(step, abstract_state)
    return step, state, iterator_state

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
