"""Tests for mi_jax.encoders: shapes, registry, invertibility, jit/grad/vmap.

Computations run under one `jax.jit` per check to keep compile counts (and
test time on a busy 2-core machine) low.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax import encoders


def _uniform(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape),
                     jnp.float32)


def _check_functional(enc, x):
  """split/merge under jit, grad, and vmap over stacked states agree.

  Returns the gradients of mean(z^2) with respect to the encoder's state.
  """
  graphdef, state = nnx.split(enc)

  def apply(state, x):
    return nnx.merge(graphdef, state)(x)

  @jax.jit
  def run(state, x):
    z = apply(state, x)
    grads = jax.grad(lambda s: jnp.mean(apply(s, x) ** 2))(state)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), state)
    z_2 = jax.vmap(apply, in_axes=(0, None))(stacked, x)
    return z, grads, z_2

  z, grads, z_2 = run(state, x)
  np.testing.assert_allclose(z_2[1], z, rtol=1e-5, atol=1e-6)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads))
  return grads


def _perturb(module, scale, seed=0):
  """Replaces every Param with N(0, scale^2) values (a non-identity map)."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [scale * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


def test_mlp_paper_sizes_flatten_and_functional():
  paper = nnx.eval_shape(lambda: encoders.MLP(392, rngs=nnx.Rngs(0)))
  assert [l.kernel.shape for l in paper.layers] == [
      (392, 300), (300, 300), (300, 100)]
  enc = encoders.MLP(8, (8,), 4, rngs=nnx.Rngs(0))
  x = _uniform((3, 2, 4, 1))
  grads = _check_functional(enc, x)
  assert grads["layers"][0]["kernel"].shape == (8, 8)
  np.testing.assert_allclose(
      enc(x), jax.nn.relu(x.reshape(3, 8) @ enc.layers[0].kernel[...]
                          + enc.layers[0].bias[...])
      @ enc.layers[1].kernel[...] + enc.layers[1].bias[...],
      rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="8 features"):
    enc(jnp.ones((4, 10)))


def test_mlp_bfloat16_compute_keeps_float32_params():
  enc = encoders.MLP(8, (8,), 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  z = jax.jit(lambda m, x: m(x))(enc, jnp.ones((2, 8)))
  assert z.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32
             for p in jax.tree.leaves(nnx.state(enc, nnx.Param)))


def test_make_registry_and_unknown_name():
  kwargs = {
      "mlp": dict(in_dim=4, hidden=(3,), out_dim=2),
      "convnet": dict(channels=2, out_dim=2),
      "realnvp": dict(dim=4, num_couplings=1, hidden=(3,)),
      "resmlp": dict(dim=4, num_layers=1),
      "resnet": dict(in_channels=1, stage_sizes=(1,), widths=(2,),
                     norm="group"),
  }
  classes = {"mlp": encoders.MLP, "convnet": encoders.ConvNet,
             "realnvp": encoders.RealNVP, "resmlp": encoders.ResMLP,
             "resnet": encoders.ResNet}
  for name, kw in kwargs.items():
    assert name in encoders.names()
    enc = nnx.eval_shape(
        lambda: encoders.make(name, rngs=nnx.Rngs(0), **kw))  # noqa: B023
    assert isinstance(enc, classes[name])
    x = jax.ShapeDtypeStruct((2, 2, 2, 1) if name in ("convnet", "resnet")
                             else (2, 4), jnp.float32)
    z = jax.eval_shape(lambda m, x: m(x), enc, x)
    assert z.shape == (2, enc.out_dim), name
  with pytest.raises(ValueError, match="known encoders"):
    encoders.make("nope", rngs=nnx.Rngs(0))


def test_convnet_paper_shapes_layernorm_and_flat_input():
  paper = nnx.eval_shape(lambda: encoders.ConvNet(rngs=nnx.Rngs(0)))
  assert paper.conv1.kernel.shape == (5, 5, 1, 64)
  assert paper.conv2.kernel.shape == (5, 5, 64, 128)
  top = jax.ShapeDtypeStruct((3, 14, 28, 1), jnp.float32)
  hidden = jax.eval_shape(
      lambda m, x: m.conv2(jax.nn.relu(m.conv1(x))), paper, top)
  assert hidden.shape == (3, 4, 7, 128)  # "SAME" padding, stride 2 twice.
  assert jax.eval_shape(lambda m, x: m(x), paper, top).shape == (3, 100)

  enc = encoders.ConvNet(channels=4, out_dim=3, rngs=nnx.Rngs(0))
  flat = encoders.ConvNet(channels=4, out_dim=3, image_shape=(6, 8, 1),
                          rngs=nnx.Rngs(0))
  top_Bx6x8x1 = _uniform((3, 6, 8, 1))

  @jax.jit
  def run(enc, flat, x):
    h = jax.nn.relu(enc.conv2(jax.nn.relu(enc.conv1(x))))
    return enc(x), flat(x.reshape(3, 48)), enc.norm(h)

  z, z_flat, n = run(enc, flat, top_Bx6x8x1)
  assert z.shape == (3, 3)
  np.testing.assert_allclose(z_flat, z, rtol=1e-5, atol=1e-5)
  # LayerNorm over (H, W, C) per example, as in the paper's code.
  np.testing.assert_allclose(jnp.mean(n, axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(n, axis=(1, 2, 3)), 1.0, atol=1e-3)
  with pytest.raises(ValueError, match="image_shape"):
    enc(top_Bx6x8x1.reshape(3, 48))


def test_convnet_functional():
  enc = encoders.ConvNet(channels=4, out_dim=3, rngs=nnx.Rngs(0))
  _check_functional(enc, _uniform((2, 6, 8, 1)))


def test_realnvp_inverse_of_forward_random_params():
  x_BxD = jax.random.normal(jax.random.key(1), (8, 8))
  for coupling in ("additive", "affine"):
    enc = encoders.RealNVP(8, num_couplings=3, hidden=(8, 8),
                           coupling=coupling, rngs=nnx.Rngs(0))
    enc = _perturb(enc, 0.3)

    @jax.jit
    def run(m, x):
      z = m(x)
      return z, m.inverse(z), m(m.inverse(x))

    z_BxD, x_rec, x_rec2 = run(enc, x_BxD)
    assert float(jnp.max(jnp.abs(z_BxD - x_BxD))) > 0.1, coupling
    np.testing.assert_allclose(x_rec, x_BxD, atol=1e-5)
    np.testing.assert_allclose(x_rec2, x_BxD, atol=1e-5)


def test_realnvp_log_det_matches_autodiff():
  x_BxD = jax.random.normal(jax.random.key(2), (3, 8))
  for coupling in ("additive", "affine"):
    enc = _perturb(encoders.RealNVP(8, num_couplings=3, hidden=(8, 8),
                                    coupling=coupling, rngs=nnx.Rngs(0)), 0.5)

    @jax.jit
    def run(m, x):
      _, log_det_B = m.forward_and_log_det(x)
      jac = jax.vmap(jax.jacfwd(lambda v: m(v[None])[0]))(x)
      return log_det_B, jnp.linalg.slogdet(jac)[1]

    log_det_B, expected = run(enc, x_BxD)
    np.testing.assert_allclose(log_det_B, expected, atol=1e-4)
    if coupling == "additive":
      np.testing.assert_allclose(log_det_B, 0.0, atol=1e-6)
    else:
      assert float(jnp.max(jnp.abs(log_det_B))) > 1e-2


def test_realnvp_starts_near_identity_up_to_permutation():
  enc = encoders.RealNVP(8, num_couplings=3, hidden=(8, 8),
                         rngs=nnx.Rngs(0), seed=3)
  x = jax.random.normal(jax.random.key(0), (4, 8))
  z = jax.jit(lambda m, x: m(x))(enc, x)
  perm = np.arange(8)
  for p in enc.permutations:
    perm = perm[np.asarray(p)]
  np.testing.assert_allclose(z, x[:, perm], atol=1e-6)
  assert not np.array_equal(perm, np.arange(8))
  other = nnx.eval_shape(lambda: encoders.RealNVP(
      8, num_couplings=3, hidden=(8, 8), rngs=nnx.Rngs(0), seed=4))
  assert other.permutations != enc.permutations
  with pytest.raises(ValueError, match="coupling"):
    encoders.RealNVP(8, coupling="spline", rngs=nnx.Rngs(0))


def test_realnvp_functional_state_is_only_weights():
  enc = encoders.RealNVP(8, num_couplings=2, hidden=(8, 8), coupling="affine",
                         init_last_only=True, rngs=nnx.Rngs(0))
  grads = _check_functional(enc, _uniform((3, 2, 4)))
  # Permutations are static graph constants, not state.
  assert all(g.ndim in (1, 2) for g in jax.tree.leaves(grads))
  assert len(jax.tree.leaves(nnx.state(enc))) == 2 * 3 * 2


def test_resmlp_near_identity_and_functional():
  enc = encoders.ResMLP(dim=8, num_layers=5, init_std=1e-4, rngs=nnx.Rngs(0))
  assert len(enc.layers) == 5
  x = jax.random.normal(jax.random.key(0), (4, 2, 4))
  grads = _check_functional(enc, x)
  assert grads["layers"][4]["kernel"].shape == (8, 8)
  z = jax.jit(lambda m, x: m(x))(enc, x)
  assert z.shape == (4, 8)
  np.testing.assert_allclose(z, x.reshape(4, 8), atol=1e-2)


def test_jacobian_log_condition_number():
  x = jax.random.normal(jax.random.key(0), (3, 8))
  diag = jnp.asarray([1.0, 2.0, 4.0, 8.0, 1.0, 2.0, 4.0, 8.0])
  log_cond = jax.jit(encoders.jacobian_log_condition_number, static_argnums=0)(
      lambda v: v * diag, x)
  np.testing.assert_allclose(log_cond, np.log(8.0), rtol=1e-5)
  enc = encoders.ResMLP(dim=8, num_layers=2, init_std=1e-4, rngs=nnx.Rngs(0))
  bad = _perturb(enc, 2.0)

  @jax.jit
  def run(enc, bad, x):
    return (encoders.jacobian_log_condition_numbers(enc, x),
            encoders.jacobian_log_condition_number(bad, x))

  near_id, bad_cond = run(enc, bad, x)
  assert near_id.shape == (3,)
  assert float(jnp.max(near_id)) < 1e-2
  assert float(bad_cond) > 0.1


def test_resnet_groupnorm_functional():
  enc = encoders.ResNet(stage_sizes=(1, 1), widths=(4, 4), out_dim=4,
                        norm="group", rngs=nnx.Rngs(0))
  assert isinstance(enc.blocks[1].proj, nnx.Conv)  # Strided shortcut.
  assert enc.blocks[0].proj is None
  _check_functional(enc, _uniform((2, 4, 4, 3)))


def test_resnet_batchnorm_train_eval():
  enc = encoders.ResNet(stage_sizes=(1, 1), widths=(4, 4), out_dim=4,
                        rngs=nnx.Rngs(0))
  x = _uniform((4, 4, 4, 3))
  apply = nnx.jit(lambda m, x: m(x))
  mean_before = np.asarray(enc.stem_norm.mean[...])
  z_train = apply(enc, x)  # Training mode by default: updates running stats.
  assert not np.allclose(enc.stem_norm.mean[...], mean_before)
  enc.eval()
  mean_eval = np.asarray(enc.stem_norm.mean[...])
  z_eval = apply(enc, x)
  np.testing.assert_array_equal(enc.stem_norm.mean[...], mean_eval)
  assert not np.allclose(z_train, z_eval)
  enc.train()
  assert enc.stem_norm.use_running_average is False

  # Pure step: new batch statistics come out of the function.
  graphdef, params, stats = nnx.split(enc, nnx.Param, nnx.BatchStat)

  @jax.jit
  def step(params, stats, x):
    def loss(params):
      m = nnx.merge(graphdef, params, stats, copy=True)
      return jnp.mean(m(x) ** 2), nnx.state(m, nnx.BatchStat)
    return jax.grad(loss, has_aux=True)(params)

  grads, new_stats = step(params, stats, x)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert not np.allclose(new_stats["stem_norm"]["mean"][...],
                         stats["stem_norm"]["mean"][...])
