"""Test setup: 8 fake CPU devices, set before JAX initialises.

Single-device code runs on device 0 as usual; multi-device tests build a mesh
over all 8. Multi-host tests start their own subprocesses.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
