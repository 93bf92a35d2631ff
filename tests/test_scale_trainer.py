"""The trainer with the scale options from the config: FSDP on a data x model mesh, blocked bounds."""

import os

import jax
import numpy as np

from mi_jax.training import config as config_lib
from mi_jax.training import loop
from mi_jax.training import metrics as metrics_lib

_SMALL = [
    "--config.encoder.kwargs.hidden=(32,)", "--config.encoder.kwargs.out_dim=16",
    "--config.batch_size=64", "--config.steps=4", "--config.log_every=2",
    "--config.eval_every=4", "--config.probe_every=100",
    "--config.checkpoint_every=2", "--config.use_mesh=true",
    "--config.progress_bar=false",
]
_SCALE = ["--config.mesh_shape=(4, 2)", "--config.param_sharding=fsdp",
          "--config.fsdp_min_size=64", "--config.bound.block_size=8"]


def _train(workdir, *overrides, **kw):
  config = config_lib.apply_overrides(config_lib.load_config(),
                                      _SMALL + list(overrides))
  return loop.train(config, workdir, final_eval=False, **kw)


def test_fsdp_blocked_trainer_equals_replicated_dense_and_resumes(tmp_path):
  dense = _train(str(tmp_path / "dense"))
  scale = _train(str(tmp_path / "scale"), *_SCALE)
  kernel = scale["state"].params["g1"]["layers"][0]["kernel"][...]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("model")  # 392
  assert kernel.addressable_shards[0].data.shape == (196, 32)
  rows = {name: metrics_lib.read_jsonl(str(tmp_path / name / "metrics.jsonl"))
          for name in ("dense", "scale")}
  assert [r["step"] for r in rows["scale"]] == [r["step"] for r in rows["dense"]]
  for a, b in zip(rows["scale"], rows["dense"]):
    for k in ("train/loss", "train/mi", "eval/bound"):
      if k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
  # g2's last bias b adds z1_i . W b to row i of the scores, which InfoNCE's
  # row softmax ignores: its gradient is 0 up to rounding, and Adam turns
  # that noise into steps of up to lr (1e-4) whose sign depends on the
  # reduction order. Every other parameter must agree to 1e-5.
  for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(scale["state"].params),
      jax.tree.leaves(dense["state"].params)):
    free = "['g2']['layers'][1]['bias']" in jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                               atol=4e-4 if free else 1e-5,
                               err_msg=jax.tree_util.keystr(path))
  # Stop at step 2 and resume: the FSDP checkpoint restores sharded.
  _train(str(tmp_path / "resumed"), *_SCALE, stop_after_step=2)
  resumed = _train(str(tmp_path / "resumed"), *_SCALE)
  assert resumed["step"] == 4
  for a, b in zip(jax.tree.leaves(resumed["state"].params),
                  jax.tree.leaves(scale["state"].params)):
    np.testing.assert_array_equal(a, b)
  assert os.path.isdir(str(tmp_path / "resumed" / "checkpoints" / "4"))
