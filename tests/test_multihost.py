"""Two local processes x 4 CPU devices (jax.distributed) == one process x 8 devices.

The workers (`tests/multihost_worker.py`) join through
`mi_jax.training.distributed.initialize("localhost:PORT", 2, i)`, each feeds
its own half of every global batch, and report their loss trajectory; the
reference runs the same code in this process (8 fake devices, conftest).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mi_jax.training import distributed

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "multihost_worker.py")


def _run_two_processes(tmp_path):
  port = distributed.free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs, outs = [], []
  for i in range(2):
    out = tmp_path / f"losses{i}.json"
    outs.append(out)
    procs.append(subprocess.Popen(
        [sys.executable, WORKER, "--num_processes", "2", "--process_id",
         str(i), "--port", str(port), "--local_devices", "4", "--out",
         str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True))
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=150)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, f"worker failed (rc={p.returncode}):\n{log[-3000:]}"
  return [json.loads(o.read_text()) for o in outs]


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_two_processes_match_one_process(tmp_path):
  sys.path.insert(0, os.path.dirname(WORKER))
  import multihost_worker  # pylint: disable=g-import-not-at-top
  results = _run_two_processes(tmp_path)
  ref_losses, ref_checksum = multihost_worker.train_losses()
  assert [r["process_index"] for r in results] == [0, 1]
  assert all(r["device_count"] == 8 for r in results)
  for r in results:
    assert len(r["losses"]) == len(ref_losses) == multihost_worker.NUM_STEPS
    np.testing.assert_allclose(r["losses"], ref_losses, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["checksum"], ref_checksum, rtol=1e-5)
  # The trajectory moves: equal losses are not just equal initial losses.
  assert abs(ref_losses[-1] - ref_losses[0]) > 1e-3
