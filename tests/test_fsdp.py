"""Sharded parameters + optimizer state (FSDP) == replicated; sharded checkpoints move across device counts."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mi_jax.training import sharding

import fsdp_worker  # tests/fsdp_worker.py

HERE = os.path.dirname(os.path.abspath(__file__))


def _close(a, b, tol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol,
                               atol=tol)


@pytest.mark.parametrize("shape,names", [((8,), ("data",)),
                                         ((4, 2), ("data", "model"))])
def test_fsdp_step_equals_replicated(shape, names):
  # SGD + momentum: its trace is sharded like the parameters. (Adam turns
  # the rounding noise of the zero gradient of a bias before BatchNorm into
  # lr-sized steps, so no two reduction orders agree there.)
  _, _, state, step = fsdp_worker.setup()
  mesh = sharding.make_mesh(shape=shape, axis_names=names)
  fsdp = sharding.state_shardings(state, mesh, params="fsdp", min_size=64)
  axis = sharding.fsdp_axis(mesh)
  kernel = fsdp.params["g1"]["l1"]["kernel"].value
  assert kernel.spec == P(None, axis)        # [16, 32]: the 32 is split
  assert fsdp.params["g1"]["l1"]["bias"].value.spec == P()   # 32 < min_size
  rep_step = sharding.shard_train_step(step, mesh)
  fsdp_step = sharding.shard_train_step(step, mesh, state_sharding=fsdp)
  s_rep = sharding.replicate(state, mesh)
  s_fsdp = sharding.place(state, fsdp)
  for t in range(4):
    b = sharding.shard_batch(fsdp_worker.batch(t), mesh)
    s_rep, m_rep = rep_step(s_rep, b, jax.random.key(t))
    s_fsdp, m_fsdp = fsdp_step(s_fsdp, b, jax.random.key(t))
    np.testing.assert_allclose(m_fsdp["loss"], m_rep["loss"], rtol=1e-5,
                               atol=1e-5)
  _close(s_fsdp.params, s_rep.params)
  _close(s_fsdp.opt_state, s_rep.opt_state)
  k = s_fsdp.params["g1"]["l1"]["kernel"][...]
  assert not k.sharding.is_fully_replicated
  assert k.addressable_shards[0].data.shape == (16, 32 // mesh.shape[axis])
  mu = s_fsdp.opt_state[0].trace["g1"]["l1"]["kernel"][...]
  assert mu.addressable_shards[0].data.shape == (16, 32 // mesh.shape[axis])
  # Bytes per device: the sharded leaves shrink by the axis size.
  full = sharding.bytes_per_device(state, sharding.state_shardings(state, mesh))
  part = sharding.bytes_per_device(state, fsdp)
  assert part < full


def test_bad_param_sharding_raises():
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match="'fsdp'"):
    sharding.state_shardings(fsdp_worker.setup()[2], mesh, params="zero")
  with pytest.raises(ValueError, match="divide"):
    sharding.make_mesh(shape=(-1, 3), axis_names=("data", "model"))


def _worker(devices, workdir, start, stop, out):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [os.path.dirname(HERE), env.get("PYTHONPATH", "")])
  cmd = [sys.executable, os.path.join(HERE, "fsdp_worker.py"),
         "--devices", str(devices), "--workdir", workdir, "--start",
         str(start), "--stop", str(stop), "--out", out]
  res = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
  assert res.returncode == 0, res.stderr[-3000:]
  with open(out) as f:
    losses = json.load(f)["losses"]
  return losses, dict(np.load(out + ".npz"))


def test_sharded_checkpoint_resumes_on_8_then_4_then_1_devices(tmp_path):
  workdir = str(tmp_path / "ckpt")
  losses, params = [], None
  for devices, start, stop in ((8, 0, 2), (4, 2, 4), (1, 4, 6)):
    more, params = _worker(devices, workdir, start, stop,
                           str(tmp_path / f"out{devices}.json"))
    losses += more
  # Reference: 6 uninterrupted steps on one device of this process.
  _, _, state, step = fsdp_worker.setup()
  jstep = jax.jit(step)
  ref = []
  for t in range(6):
    state, m = jstep(state, fsdp_worker.batch(t), jax.random.key(t))
    ref.append(float(m["loss"]))
  np.testing.assert_allclose(losses, ref, rtol=1e-5, atol=1e-5)
  ref_params = {jax.tree_util.keystr(p): np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(state.params)}
  assert sorted(params) == sorted(ref_params)
  for name, x in ref_params.items():
    np.testing.assert_allclose(params[name], x, rtol=1e-5, atol=1e-5,
                               err_msg=name)
