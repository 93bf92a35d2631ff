#!/usr/bin/env bash
# Accelerator check for mi_jax (see device_check.py for what it prints).
#   bash experiments/benchmarks/device_check.sh            # one GPU / TPU, < 5 minutes
#   bash experiments/benchmarks/device_check.sh --quick    # tiny CPU smoke run
# Extra arguments go to device_check.py (e.g. --jobs main --batches 128,1024).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python}"
if [[ -x "$ROOT/.venv/bin/python" && "${PYTHON}" == python ]]; then
  PYTHON="$ROOT/.venv/bin/python"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Let the accelerator's allocator report a true peak (no 75% preallocation).
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
exec timeout "${DEVICE_CHECK_TIMEOUT:-600}" "$PYTHON" "$ROOT/experiments/benchmarks/device_check.py" "$@"
