"""The trainer's input paths (config.input) give the same run: device gather == prefetch == host."""

import jax
import numpy as np
import pytest

from mi_jax.training import config as config_lib
from mi_jax.training import loop
from mi_jax.training import metrics as metrics_lib
from mi_jax.training import run as run_lib

# 4,000 training images / 128 = 31 batches per epoch: 35 steps cross an epoch.
_SMALL = [
    "--config.encoder.kwargs.hidden=(16,)", "--config.encoder.kwargs.out_dim=8",
    "--config.batch_size=128", "--config.steps=35", "--config.log_every=7",
    "--config.eval_every=35", "--config.probe_every=1000",
    "--config.checkpoint_every=35", "--config.progress_bar=false",
    "--config.lr=1e-3",
]


def _train(workdir, *overrides, **kw):
  config = config_lib.apply_overrides(config_lib.load_config(),
                                      _SMALL + list(overrides))
  summary = loop.train(config, str(workdir), final_eval=False, **kw)
  rows = metrics_lib.read_jsonl(str(workdir / "metrics.jsonl"))
  return summary, rows


def _assert_same(a, b, exact):
  (sa, ra), (sb, rb) = a, b
  assert [r["step"] for r in ra] == [r["step"] for r in rb]
  for x, y in zip(ra, rb):
    for k in y:
      if k == "train/steps_per_s":
        continue
      if exact:
        assert x[k] == y[k], (k, x[k], y[k])
      else:
        np.testing.assert_allclose(x[k], y[k], rtol=1e-5, atol=1e-6,
                                   err_msg=k)
  for p, q in zip(jax.tree.leaves(sa["state"].params),
                  jax.tree.leaves(sb["state"].params)):
    if exact:
      np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
    else:
      np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-5,
                                 atol=1e-6)


def test_auto_input_mode_puts_small_array_data_on_the_device():
  config = config_lib.apply_overrides(config_lib.load_config(),
                                      _SMALL + ["--config.use_mesh=false"])
  run = run_lib.build_run(config)
  assert run_lib.input_mode(run) == "device"
  config.device_data_max_mb = 1  # 4,000 x 784 float32 = 12.5 MB > 1 MiB.
  assert run_lib.input_mode(run_lib.build_run(config)) == "prefetch"
  config.input = "disk"
  with pytest.raises(ValueError, match="config.input must be one of"):
    run_lib.build_run(config)


def test_device_and_prefetch_feeds_equal_host_feed_one_device(tmp_path):
  """35 steps (an epoch boundary at 31), one step per call (no scan)."""
  one = ["--config.use_mesh=false"]
  host = _train(tmp_path / "host", *one, "--config.input=host")
  device = _train(tmp_path / "device", *one, "--config.input=device",
                  "--config.steps_per_call=1")
  prefetch = _train(tmp_path / "prefetch", *one, "--config.input=prefetch")
  assert len(host[1]) == 5  # 7, 14, ..., 35
  _assert_same(prefetch, host, exact=True)
  _assert_same(device, host, exact=True)


def test_device_feed_on_the_mesh_resumes_and_equals_host(tmp_path):
  """8 fake devices, data replicated, indices split; stop at 18 and resume."""
  mesh = ["--config.use_mesh=true", "--config.input=device",
          "--config.steps_per_call=5"]
  host = _train(tmp_path / "host", "--config.use_mesh=true",
                "--config.input=host")
  _train(tmp_path / "device", *mesh, stop_after_step=18)
  resumed = _train(tmp_path / "device", *mesh)
  assert resumed[0]["step"] == 35
  _assert_same(resumed, host, exact=True)
