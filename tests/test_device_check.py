"""experiments/benchmarks/device_check.sh runs on CPU (--quick) and prints every figure."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_check_quick_on_cpu():
  env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  out = subprocess.run(
      ["bash", os.path.join(ROOT, "experiments", "benchmarks",
                            "device_check.sh"), "--quick", "--jobs",
       "main", "--batches", "8", "--steps", "1", "--seeds", "2",
       "--peak-n", "128"],
      env=env, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  text = out.stdout
  assert re.search(r"matmul peak measured: float32 [\d.]+ TFLOP/s, "
                   r"bfloat16 [\d.]+ TFLOP/s", text), text
  for name in ("main",):
    line = re.search(
        rf"{name}\s+batch\s+8: f32\s+([\d.]+) steps/s,\s+([\d.]+) GFLOP/step,"
        rf"\s+([\d.]+)% of matmul peak; bf16\s+([\d.]+) steps/s .*memory f32 "
        rf"(\d+) MiB", text)
    assert line, text
    assert float(line.group(1)) > 0 and float(line.group(4)) > 0
    assert float(line.group(2)) > 0          # XLA counted the step's FLOPs
    assert re.search(rf"{name}\s+2 seeds vmapped / sequential .*: "
                     rf"[\d.]+x", text), text
  assert "device check done" in text
