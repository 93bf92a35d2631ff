"""Test setup, applied before JAX initialises.

- 8 fake CPU devices: single-device code runs on device 0 as usual;
  multi-device tests build a mesh over all 8. Multi-host tests start their own
  subprocesses.
- The embedded data set is prepared into a test-only directory (not the
  user's cache), so every run on a new machine exercises the real preparation
  path, with the xdist workers racing for it under the data layer's file lock.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault(
    "MI_JAX_DATA_DIR",
    os.path.join(tempfile.gettempdir(), f"mi_jax_test_tfds_{os.getuid()}"))
