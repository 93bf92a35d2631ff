"""CPC: score matrix and positive mask vs a hand-written reference (1 and 8 devices),
causal context networks, the speech encoder's 160x rate, and training under the
jitted, sharded and vmapped-seed steps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import encoders, training, views
from mi_jax.objectives import cpc
from mi_jax.training import sharding


def _reference(z, c, heads):
  """Loops over every (row cell, column cell) pair, float64."""
  z, c, heads = (np.asarray(a, np.float64) for a in (z, c, heads))
  b, h, w, _ = z.shape
  out = []
  for k in range(1, heads.shape[0] + 1):
    rows, mask = [], []
    for n in range(b):
      for i in range(h - k):
        for j in range(w):
          pred = c[n, i, j] @ heads[k - 1]
          rows.append([pred @ z[n2, i2, j2] for n2 in range(b)
                       for i2 in range(h) for j2 in range(w)])
          mask.append([(n2, i2, j2) == (n, i + k, j) for n2 in range(b)
                       for i2 in range(h) for j2 in range(w)])
    s, m = np.array(rows), np.array(mask)
    # InfoNCE with one positive per row: log softmax at the positive + log C.
    lse = np.log(np.sum(np.exp(s - s.max(1, keepdims=True)), 1)) + s.max(1)
    nce = np.mean(s[m] - lse + math.log(s.shape[1]))
    acc = np.mean(np.argmax(s, 1) == np.argmax(m, 1))
    out.append((s, m, nce, acc))
  return out


def _grid(seed, b=8, h=3, w=2, dz=4, dc=3, k=2):
  keys = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(keys[0], (b, h, w, dz)),
          jax.random.normal(keys[1], (b, h, w, dc)),
          jax.random.normal(keys[2], (k, dc, dz)))


def _scores_and_masks(z, c, heads):
  out = []
  for k in range(1, heads.shape[0] + 1):
    pred = jnp.einsum("bhwc,cd->bhwd", c, heads[k - 1])
    out.append((cpc.offset_scores(pred, z, k),
                cpc.offset_mask(z.shape[0], z.shape[1], z.shape[2], k)))
  return out, cpc.cpc_terms(z, c, heads)


def test_scores_and_mask_equal_reference_on_one_and_eight_devices():
  z, c, heads = _grid(0)
  ref = _reference(z, c, heads)
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  fn = jax.jit(_scores_and_masks)
  sharded = sharding.shard_train_step(
      lambda heads, zc, _: _scores_and_masks(*zc, heads), mesh,
      has_state_output=False)
  z8, c8 = sharding.shard_batch((z, c), mesh)
  assert len(z8.sharding.device_set) == 8    # one image per device
  for got in (fn(z, c, heads),
              sharded(heads, (z8, c8), jax.random.key(0))):
    pairs, (nce_K, logloss_K, acc_K) = got
    for k, ((s, m), (s_ref, m_ref, nce_ref, acc_ref)) in enumerate(
        zip(pairs, ref)):
      # 8 images x (3 - k) rows x 2 columns predictions vs all 48 patches.
      assert s.shape == (8 * (3 - k - 1) * 2, 48)
      np.testing.assert_array_equal(np.asarray(m), m_ref)
      assert np.asarray(m).sum(1).tolist() == [1] * s.shape[0]
      np.testing.assert_allclose(np.asarray(s), s_ref, rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(float(nce_K[k]), nce_ref, rtol=1e-5,
                                 atol=1e-5)
      np.testing.assert_allclose(float(logloss_K[k]),
                                 math.log(48) - nce_ref, rtol=1e-5)
      assert float(acc_K[k]) == pytest.approx(acc_ref)


def test_mask_marks_the_patch_k_rows_below_in_the_same_image():
  m = np.asarray(cpc.offset_mask(2, 3, 2, 1))   # grid 3x2, 2 images
  # Row 0 = image 0, cell (0, 0) -> column of image 0, cell (1, 0) = 2.
  # Last row = image 1, cell (1, 1) -> image 1, cell (2, 1) = 6 + 5 = 11.
  assert np.flatnonzero(m[0]).tolist() == [2]
  assert np.flatnonzero(m[-1]).tolist() == [11]
  with pytest.raises(ValueError, match="offset k=3"):
    cpc.offset_mask(2, 3, 2, 3)


def _image_model(key, context="row_causal_context"):
  rngs = nnx.Rngs(key)
  enc = encoders.make("convnet", in_channels=1, channels=4, kernel_size=3,
                      out_dim=6, rngs=rngs)
  ctx = encoders.make(context, in_dim=6, hidden=5, rngs=rngs)
  return cpc.CPCModel(enc, ctx, num_offsets=2, patch_size=4, patch_stride=2,
                      rngs=rngs)


def test_grid_encodes_each_patch_at_its_place():
  model = _image_model(0)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
  z = model.grid(x)
  assert z.shape == (2, 3, 3, 6)
  np.testing.assert_allclose(
      z[1, 2, 1], model.encoder(x[1:2, 4:8, 2:6])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("context", ["row_causal_context", "gru_context"])
def test_context_at_row_i_ignores_later_rows(context):
  ctx = encoders.make(context, in_dim=3, hidden=4, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(0), (2, 5, 4, 3))
  z_changed = z.at[:, 3:].set(jax.random.normal(jax.random.key(1),
                                                (2, 2, 4, 3)))
  c, c_changed = ctx(z), ctx(z_changed)
  np.testing.assert_array_equal(np.asarray(c[:, :3]),
                                np.asarray(c_changed[:, :3]))
  assert not np.allclose(c[:, 3:], c_changed[:, 3:])


def test_speech_encoder_is_160x():
  enc = encoders.make("conv1d", in_channels=1, channels=8, out_dim=5,
                      rngs=nnx.Rngs(0))
  assert enc.downsampling == 160
  assert enc(jnp.zeros((2, 2560))).shape == (2, 16, 5)
  assert enc(jnp.zeros((1, 20480))).shape == (1, 128, 5)   # paper: 128


def _audio_model(key):
  rngs = nnx.Rngs(key)
  enc = encoders.make("conv1d", in_channels=1, channels=8, out_dim=6,
                      rngs=rngs)
  ctx = encoders.make("gru_context", in_dim=6, hidden=5, rngs=rngs)
  return cpc.CPCModel(enc, ctx, num_offsets=3, kind="audio", rngs=rngs)


def _image_batch(b=8):
  return {"image": jax.random.uniform(jax.random.key(5), (b, 8, 8, 1))}


def _audio_batch(b=8):
  return {"audio": jax.random.normal(jax.random.key(5), (b, 1600)),
          "length": jnp.arange(b, dtype=jnp.int32) * 150 + 500}


CASES = {
    "image": (_image_model, _image_batch, cpc.make_cpc_loss()),
    "audio": (_audio_model, _audio_batch,
              cpc.make_cpc_loss(input_fn=cpc.audio_crop_input(960))),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_sharded_step_equals_single_device_and_learns(kind):
  model_fn, batch_fn, loss_fn = CASES[kind]
  tx = optax.adam(3e-3)
  graphdef, state = training.init_train_state(model_fn(0), tx)
  step = training.make_train_step(graphdef, tx, loss_fn)
  mesh = sharding.make_mesh()
  single, sstep = jax.jit(step), sharding.shard_train_step(step, mesh)
  batch = batch_fn()
  s1, s8 = state, sharding.replicate(state, mesh)
  b8 = sharding.shard_batch(batch, mesh)
  # The loss on one fixed crop (key 0) before and after training.
  heldout = jax.jit(training.make_eval_step(graphdef, loss_fn))
  before = float(heldout(state, batch, jax.random.key(0))["loss"])
  for t in range(4):
    key = jax.random.key(t)
    s1, m1 = single(s1, batch, key)
    s8, m8 = sstep(s8, b8, key)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-4, atol=1e-4)
    assert bool(m1["finite"])
  for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  assert float(heldout(s1, batch, jax.random.key(0))["loss"]) < before
  assert set(m1) >= {"mi", "acc/k1", "logloss/k2", "infonce/k2"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_vmapped_seeds_equal_each_seed_alone(kind):
  model_fn, batch_fn, loss_fn = CASES[kind]
  tx = optax.sgd(0.05)
  keys = jax.random.split(jax.random.key(0), 2)
  graphdef, states = training.init_train_states(model_fn, tx, keys)
  step = training.make_train_step(graphdef, tx, loss_fn)
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=None))
  batch = batch_fn()
  step_keys = jax.random.split(jax.random.key(2), 2)
  singles = [training.unstack_state(states, i) for i in range(2)]
  for _ in range(2):
    states, vm = vstep(states, batch, step_keys)
    for i in range(2):
      singles[i], m = jax.jit(step)(singles[i], batch, step_keys[i])
      np.testing.assert_allclose(vm["loss"][i], m["loss"], rtol=1e-5,
                                 atol=1e-5)
  assert float(vm["loss"][0]) != float(vm["loss"][1])


def test_audio_features_pool_valid_frames_only():
  model = _audio_model(0)
  x = jax.random.normal(jax.random.key(0), (2, 1600))
  f = model.features(x, jnp.array([480, 1600]))
  z, c = model(x)
  # 480 samples: frames starting at 0, 160, 320 (3 of 10) are valid.
  np.testing.assert_allclose(f["context"][0], c[0, :3, 0].mean(0), rtol=1e-5)
  np.testing.assert_allclose(f["z"][1], z[1, :, 0].mean(0), rtol=1e-5)
