"""Multi-host start-up: `jax.distributed.initialize` with the CPU details handled.

Call `initialize(...)` once per process, before any other JAX call that
touches devices. On TPU / GPU clusters the arguments are usually detected
from the environment (`initialize()` with no arguments); for several local
processes on one machine pass `"localhost:PORT"`, the process count and this
process's id. On CPU, cross-process collectives go through gloo
(`jax_cpu_collectives_implementation`). After it, `jax.devices()` lists the
devices of every process, and `mi_jax.training.sharding.make_mesh()` spans
them all.
"""

import os
import socket
from typing import Optional, Sequence, Union

import jax


def free_port() -> int:
  """A TCP port on localhost that is free right now (for a local coordinator)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def initialize(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    *,
    local_device_ids: Optional[Union[int, Sequence[int]]] = None,
    cpu_collectives: str = "gloo",
    timeout_s: int = 300,
) -> None:
  """Joins this process to a multi-process JAX job (idempotent).

  Args:
    coordinator_address: `"host:port"` of process 0; None lets JAX detect the
      cluster (TPU pods, SLURM, ...). Env `MI_JAX_COORDINATOR` is a fallback.
    num_processes: total number of processes (env `MI_JAX_NUM_PROCESSES`).
    process_id: this process's index in `[0, num_processes)` (env
      `MI_JAX_PROCESS_ID`).
    local_device_ids: restrict this process to these local devices.
    cpu_collectives: CPU cross-process collectives ("gloo" or "mpi").
    timeout_s: how long to wait for every process to join.
  """
  if jax.distributed.is_initialized():
    return
  env = os.environ
  if coordinator_address is None:
    coordinator_address = env.get("MI_JAX_COORDINATOR")
  if num_processes is None and "MI_JAX_NUM_PROCESSES" in env:
    num_processes = int(env["MI_JAX_NUM_PROCESSES"])
  if process_id is None and "MI_JAX_PROCESS_ID" in env:
    process_id = int(env["MI_JAX_PROCESS_ID"])
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(
      coordinator_address, num_processes, process_id,
      local_device_ids=local_device_ids, initialization_timeout=timeout_s)


def shutdown() -> None:
  """Leaves the multi-process job (no-op if `initialize` was not called)."""
  if jax.distributed.is_initialized():
    jax.distributed.shutdown()


def is_coordinator() -> bool:
  """True on process 0: the one that writes logs, plots and checkpoints metadata."""
  return jax.process_index() == 0
