"""Tests for TrainState, the pure train/eval steps, vmap over seeds and the multiview loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import bounds, critics, training
from mi_jax.objectives import multiview
from mi_jax.training import sharding


class _Enc(nnx.Module):

  def __init__(self, din, dout, *, rngs, bn=False):
    self.l1 = nnx.Linear(din, 16, rngs=rngs)
    self.bn = nnx.BatchNorm(16, rngs=rngs) if bn else None
    self.l2 = nnx.Linear(16, dout, rngs=rngs)

  def __call__(self, x):
    h = self.l1(x)
    if self.bn is not None:
      h = self.bn(h)
    return self.l2(jax.nn.relu(h))


def _halves(images, key):
  del key
  h = images.shape[1] // 2
  return images[:, :h], images[:, h:]


def _model(key, bn=False, shared=False):
  rngs = nnx.Rngs(key)
  g1 = _Enc(8, 4, rngs=rngs, bn=bn)
  g2 = None if shared else _Enc(8, 4, rngs=rngs, bn=bn)
  return multiview.MultiviewModel(g1, g2, critics.Bilinear(4, 4, rngs=rngs),
                                  flatten=True)


def _batch(key, b=16):
  return {"image": jax.random.uniform(key, (b, 4, 4, 1)),
          "label": jnp.zeros((b,), jnp.int32)}


LOSS = multiview.make_multiview_loss(views=_halves, bound="infonce")


def test_step_matches_manual_optax_update():
  # eps=1e-3: Adam's default 1e-8 turns float-noise gradients into full steps.
  tx = optax.adam(1e-2, eps=1e-3)
  model = _model(0)
  graphdef, state = training.init_train_state(model, tx)
  step = jax.jit(training.make_train_step(graphdef, tx, LOSS))
  batch, key = _batch(jax.random.key(1)), jax.random.key(2)
  new_state, metrics = step(state, batch, key)

  def loss_of(params):
    m = nnx.merge(graphdef, params, state.rest)
    return LOSS(m, batch, key)[0]

  loss, grads = jax.value_and_grad(loss_of)(state.params)
  updates, _ = tx.update(grads, tx.init(state.params), state.params)
  want = optax.apply_updates(state.params, updates)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["mi"], -loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads),
                             rtol=1e-6)
  np.testing.assert_allclose(metrics["param_norm"], optax.global_norm(want),
                             rtol=1e-6)
  assert bool(metrics["finite"])
  assert int(new_state.step) == 1
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_training_increases_bound():
  tx = optax.adam(1e-2)
  graphdef, state = training.init_train_state(_model(0), tx)
  step = jax.jit(training.make_train_step(graphdef, tx, LOSS))
  batch = _batch(jax.random.key(1), 32)
  mis = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.key(i))
    mis.append(float(metrics["mi"]))
  assert mis[-1] > mis[0] + 0.3
  assert mis[-1] <= np.log(32) + 1e-5


def test_nonfinite_loss_keeps_state():
  tx = optax.sgd(0.1)
  graphdef, state = training.init_train_state(_model(0), tx)

  def nan_loss(model, batch, key):
    loss, m = LOSS(model, batch, key)
    return loss * jnp.nan, m

  step = jax.jit(training.make_train_step(graphdef, tx, nan_loss))
  new_state, metrics = step(state, _batch(jax.random.key(1)),
                            jax.random.key(2))
  assert not bool(metrics["finite"])
  chex_equal = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new_state,
                            state)
  assert all(jax.tree.leaves(chex_equal))


def test_nonfinite_gradient_with_finite_loss_keeps_state():
  tx = optax.adam(1e-2)
  graphdef, state = training.init_train_state(_model(0), tx)

  def nan_grad_loss(model, batch, key):
    loss, m = LOSS(model, batch, key)
    w = model.critic.kernel[...]
    # sqrt(|0|) = 0 in the forward pass, NaN in the backward pass.
    return loss + jnp.sum(jnp.sqrt(jnp.abs(w - jax.lax.stop_gradient(w)))), m

  step = jax.jit(training.make_train_step(graphdef, tx, nan_grad_loss))
  new_state, metrics = step(state, _batch(jax.random.key(1)),
                            jax.random.key(2))
  assert np.isfinite(metrics["loss"]) and not bool(metrics["finite"])
  assert int(new_state.step) == 0
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_batchnorm_stats_updated_and_eval_mode():
  tx = optax.sgd(0.0)
  graphdef, state = training.init_train_state(_model(0, bn=True), tx)
  step = jax.jit(training.make_train_step(graphdef, tx, LOSS))
  batch, key = _batch(jax.random.key(1)), jax.random.key(2)
  new_state, _ = step(state, batch, key)
  old_mean = state.rest["g1"]["bn"]["mean"][...]
  new_mean = new_state.rest["g1"]["bn"]["mean"][...]
  assert not np.allclose(old_mean, new_mean)
  # Eval mode uses running stats: the result does not depend on the batch mix.
  eval_step = jax.jit(training.make_eval_step(graphdef, LOSS))
  m_full = eval_step(new_state, batch, key)
  assert set(m_full) >= {"loss", "mi"}
  model = nnx.merge(graphdef, new_state.params, new_state.rest)
  model.eval()
  z_all = model.encode1(batch["image"][:, :2])
  z_one = model.encode1(batch["image"][:1, :2])
  np.testing.assert_allclose(z_all[:1], z_one, rtol=1e-5, atol=1e-6)


def test_vmap_over_seeds_equals_each_seed_alone():
  # SGD, not Adam: Adam rescales the float-noise gradient of the bias before
  # BatchNorm (exactly zero in theory) to a full step.
  tx = optax.sgd(0.1, momentum=0.9)
  n = 3
  keys = jax.random.split(jax.random.key(0), n)
  graphdef, states = training.init_train_states(
      lambda k: _model(k, bn=True), tx, keys)
  step = training.make_train_step(graphdef, tx, LOSS)
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=None))
  sstep = jax.jit(step)
  batch = _batch(jax.random.key(1))
  step_keys = jax.random.split(jax.random.key(2), n)
  singles = [training.unstack_state(states, i) for i in range(n)]
  for t in range(3):
    states, vm = vstep(states, batch, step_keys)
    for i in range(n):
      singles[i], m = sstep(singles[i], batch, step_keys[i])
      np.testing.assert_allclose(vm["loss"][i], m["loss"], rtol=1e-6,
                                 atol=1e-6)
  for i in range(n):
    got = training.unstack_state(states, i)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(singles[i])):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # Seeds differ from each other.
  assert not np.allclose(vm["loss"][0], vm["loss"][1])


def test_init_train_states_equals_separate_inits():
  tx = optax.adam(1e-2)
  keys = jax.random.split(jax.random.key(0), 3)
  graphdef, states = training.init_train_states(_model, tx, keys)
  assert states.step.shape == (3,)
  for i in (0, 2):
    g_i, s_i = training.init_train_state(_model(keys[i]), tx)
    assert g_i == graphdef
    for a, b in zip(jax.tree.leaves(training.unstack_state(states, i)),
                    jax.tree.leaves(s_i)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not np.allclose(states.params["critic"]["kernel"][...][0],
                         states.params["critic"]["kernel"][...][1])


def test_vmap_per_seed_batches():
  tx = optax.sgd(0.1)
  keys = jax.random.split(jax.random.key(0), 2)
  graphdef, states = training.init_train_states(_model, tx, keys)
  step = training.make_train_step(graphdef, tx, LOSS)
  batches = jax.vmap(_batch)(jax.random.split(jax.random.key(3), 2))
  _, vm = jax.jit(training.vmap_over_seeds(step, batch_axis=0))(
      states, batches, keys)
  for i in range(2):
    _, m = jax.jit(step)(training.unstack_state(states, i),
                jax.tree.map(lambda x: x[i], batches), keys[i])
    np.testing.assert_allclose(vm["loss"][i], m["loss"], rtol=1e-6,
                               atol=1e-6)


def test_multi_step_equals_sequential_steps():
  tx = optax.sgd(0.1, momentum=0.9)
  graphdef, state = training.init_train_state(_model(0), tx)
  step = training.make_train_step(graphdef, tx, LOSS)
  t = 4
  batches = jax.vmap(_batch)(jax.random.split(jax.random.key(3), t))
  key = jax.random.key(5)
  multi = jax.jit(training.make_multi_step(step, t))
  got, metrics = multi(state, batches, key)
  assert metrics["loss"].shape == (t,)
  s = state
  for i, k in enumerate(jax.random.split(key, t)):
    s, m = jax.jit(step)(s, jax.tree.map(lambda x: x[i], batches), k)
    np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-6,
                               atol=1e-6)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(s)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_multi_step_with_batch_sampler_draws_inside_the_scan():
  """`with_batch_sampler` + `make_multi_step(batch_axis=None)`: step t draws
  rows of the data with the first half of `split(split(key, T)[t])` and
  steps with the second, as a loop of plain steps does."""
  tx = optax.sgd(0.1, momentum=0.9)
  graphdef, state = training.init_train_state(_model(0), tx)
  step = training.make_train_step(graphdef, tx, LOSS)
  data = _batch(jax.random.key(3), b=40)

  def sample(d, k):
    idx = jax.random.randint(k, (16,), 0, 40)
    return jax.tree.map(lambda x: x[idx], d)

  t, key = 3, jax.random.key(5)
  multi = jax.jit(training.make_multi_step(
      training.with_batch_sampler(step, sample), t, batch_axis=None))
  got, metrics = multi(state, data, key)
  s = state
  for i, k in enumerate(jax.random.split(key, t)):
    k_batch, k_step = jax.random.split(k)
    s, m = jax.jit(step)(s, sample(data, k_batch), k_step)
    np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-6,
                               atol=1e-6)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(s)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="batch_axis must be 0 or None"):
    training.make_multi_step(step, t, batch_axis=1)


def test_heldout_mean_and_apply_in_chunks():
  """The mean over batches with keys fold_in(key, i); chunks reassembled on `axis`."""
  batches = [np.full((2,), float(i)) for i in range(3)]
  key = jax.random.key(7)
  got = training.heldout_mean(lambda state, b, k: {"v": b.sum() * state},
                              2.0, batches, key)
  assert got["v"] == pytest.approx((0 + 4 + 8) / 3)
  seen = []
  training.heldout_mean(lambda s, b, k: seen.append(k) or 0.0, None, batches, key)
  assert all(np.array_equal(jax.random.key_data(k), jax.random.key_data(
      jax.random.fold_in(key, i))) for i, k in enumerate(seen))
  x_N = np.arange(10.0)
  out = training.apply_in_chunks(lambda x: {"a": x * 2}, x_N, 3)
  np.testing.assert_array_equal(out["a"], x_N * 2)
  out_b = training.apply_in_chunks(lambda x: np.stack([x, -x]), x_N, 4, axis=1)
  np.testing.assert_array_equal(out_b, np.stack([x_N, -x_N]))
  np.testing.assert_array_equal(
      training.apply_in_chunks(lambda x: x + 1, x_N, None), x_N + 1)


def test_bfloat16_compute_keeps_float32_state():
  tx = optax.adam(1e-2)
  graphdef, state = training.init_train_state(_model(0, bn=True), tx)
  step = jax.jit(training.make_train_step(graphdef, tx, LOSS,
                                          compute_dtype=jnp.bfloat16))
  f32_step = jax.jit(training.make_train_step(graphdef, tx, LOSS))
  batch, key = _batch(jax.random.key(1)), jax.random.key(2)
  new_state, metrics = step(state, batch, key)
  _, m32 = f32_step(state, batch, key)
  assert metrics["loss"].dtype == jnp.float32
  assert all(x.dtype == y.dtype for x, y in zip(jax.tree.leaves(new_state),
                                                 jax.tree.leaves(state)))
  np.testing.assert_allclose(metrics["loss"], m32["loss"], atol=0.05)


def test_shared_encoder_and_target_mode():
  model = _model(0, shared=True)
  assert model.g1 is model.g2
  tx = optax.sgd(0.1)
  graphdef, state = training.init_train_state(model, tx)
  loss_fn = multiview.make_multiview_loss(
      views=_halves, bound="infonce", target=1.0, noise_std=0.1)
  _, metrics = jax.jit(training.make_train_step(graphdef, tx, loss_fn))(
      state, _batch(jax.random.key(1)), jax.random.key(2))
  np.testing.assert_allclose(metrics["loss"], jnp.abs(metrics["mi"] - 1.0),
                             rtol=1e-6)
  # Shared weights: one encoder's params in the state.
  assert "g2" not in state.params or "g1" not in state.params


def test_global_norm_one_device_and_under_a_mesh():
  """The concatenated form (one device) and optax's per-leaf form (traced
  under a mesh) both equal the float64 norm; integer leaves are left out."""
  rng = np.random.default_rng(0)
  tree = {"w": rng.normal(size=(7, 5)).astype(np.float32),
          "b": rng.normal(size=(5,)).astype(np.float32) * 30,
          "s": np.float32(-2.5), "n": np.arange(4, dtype=np.int32)}
  want = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2)
                     for k, v in tree.items() if k != "n"))
  got = jax.jit(training.global_norm)(tree)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got.dtype == jnp.float32
  mesh = sharding.make_mesh()
  with jax.set_mesh(mesh):
    got_mesh = jax.jit(training.global_norm)(tree)
  np.testing.assert_allclose(got_mesh, want, rtol=1e-6)
  assert float(training.global_norm({"n": np.arange(3)})) == 0.0
  bad = dict(tree, b=np.where(np.arange(5) == 1, np.inf, tree["b"]))
  assert np.isinf(jax.jit(training.global_norm)(bad))
  vmapped = jax.vmap(training.global_norm)(
      {"w": np.stack([tree["w"], 2 * tree["w"]])})
  one = np.sqrt(np.sum(np.asarray(tree["w"], np.float64) ** 2))
  np.testing.assert_allclose(vmapped, [one, 2 * one], rtol=1e-6)


def _assert_same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_vmap_over_seeds_fast_guard_equals_plain_vmap():
  """`vmap_over_seeds` (one lax.cond for all seeds, `step.vmap_seeds`) gives
  the states of `jax.vmap(step)` bit for bit, also when one seed's batch is
  not finite (that seed keeps its state), for a step, a multi-step and a
  multi-step of a batch-sampling step."""
  tx = optax.adam(1e-2)
  keys = jax.random.split(jax.random.key(0), 3)
  graphdef, states = training.init_train_states(_model, tx, keys)
  step = training.make_train_step(graphdef, tx, LOSS)
  images = jax.random.uniform(jax.random.key(1), (3, 16, 4, 4, 1))
  bad = {"image": images.at[1, 0, 0, 0, 0].set(jnp.nan)}
  fast = jax.jit(training.vmap_over_seeds(step, batch_axis=0))(
      states, bad, keys)
  plain = jax.jit(jax.vmap(step))(states, bad, keys)
  _assert_same(fast[0], plain[0])
  np.testing.assert_array_equal(fast[1]["finite"], [True, False, True])
  _assert_same(training.unstack_state(fast[0], 1),
               training.unstack_state(states, 1))
  assert not np.array_equal(fast[0].params["critic"]["kernel"][...][0],
                            states.params["critic"]["kernel"][...][0])

  multi = training.make_multi_step(step, 2)
  batches = {"image": jax.random.uniform(jax.random.key(2),
                                         (3, 2, 16, 4, 4, 1))}
  fast = jax.jit(training.vmap_over_seeds(multi, batch_axis=0))(
      states, batches, keys)
  plain = jax.jit(jax.vmap(multi))(states, batches, keys)
  _assert_same(fast[0], plain[0])
  assert fast[1]["loss"].shape == (3, 2)
  np.testing.assert_allclose(fast[1]["loss"], plain[1]["loss"], rtol=1e-6)

  data = jax.random.uniform(jax.random.key(3), (40, 4, 4, 1))
  sampled = training.with_batch_sampler(
      step, lambda d, k: {"image": d[jax.random.randint(k, (16,), 0, 40)]})
  multi = training.make_multi_step(sampled, 2, batch_axis=None)
  for key_axis, k in ((0, keys), (None, keys[0])):
    fast = jax.jit(training.vmap_over_seeds(
        multi, batch_axis=None, key_axis=key_axis))(states, data, k)
    plain = jax.jit(jax.vmap(multi, in_axes=(0, None, key_axis)))(
        states, data, k)
    _assert_same(fast[0], plain[0])
    np.testing.assert_allclose(fast[1]["mi"], plain[1]["mi"], rtol=1e-6)
