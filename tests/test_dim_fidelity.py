"""DIM as the reference code builds it: critic normalisation, gradient
penalty, prior-term defaults, occlusion, code statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mi_jax.objectives import dim


def _scores_for(critic_cls, scale):
  critic = critic_cls(16, 8, embed_dim=32, rngs=nnx.Rngs(0))
  critic.train()  # BN on batch statistics, as in a train step
  local = jax.random.normal(jax.random.key(1), (6, 3, 3, 16))
  y = jax.random.normal(jax.random.key(2), (6, 8))
  scores, _ = jax.jit(lambda c, l, y: c(l, y))(critic, local, scale * y)
  return critic, np.asarray(scores), y


def test_reference_critic_scores_do_not_grow_with_y():
  _, s1, _ = _scores_for(dim.LocalCritic, 1.0)
  critic, s10, y = _scores_for(dim.LocalCritic, 10.0)
  # LayerNorm at init (gain 1, bias 0): every embedding has norm sqrt(E),
  # so |score| <= E and the score scale is that of unit-variance vectors.
  for g in (critic.embed_global(y), critic.embed_global(10 * y)):
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), np.sqrt(32),
                               rtol=1e-4)
  assert np.abs(s10).max() <= 32 + 1e-3
  ratio = np.abs(s10).mean() / np.abs(s1).mean()
  assert 0.8 < ratio < 1.25, ratio
  # The former critic (linear skip, no normalisation) scales with Y.
  _, p1, _ = _scores_for(dim.PlainLocalCritic, 1.0)
  _, p10, _ = _scores_for(dim.PlainLocalCritic, 10.0)
  assert np.abs(p10).mean() / np.abs(p1).mean() > 9.0


def test_shortcut_starts_as_noisy_identity():
  emb = dim.MIEmbedding(5, 8, rngs=nnx.Rngs(0))
  k = np.asarray(emb.shortcut.kernel.value)
  assert k.shape == (5, 8)
  np.testing.assert_array_equal(np.diag(k), np.ones(5))
  off = k[~np.eye(5, 8, dtype=bool)]
  assert np.abs(off).max() <= 0.01 and np.abs(off).max() > 0


def _np_mlp_input_grad(layers, v):
  """d(sum_b d(v_b))/dv for a ReLU MLP, float64, by hand."""
  ws = [np.asarray(l.kernel.value, np.float64) for l in layers]
  bs = [np.asarray(l.bias.value, np.float64) for l in layers]
  h, masks = v.astype(np.float64), []
  for w, b in zip(ws[:-1], bs[:-1]):
    pre = h @ w + b
    masks.append(pre > 0)
    h = np.maximum(pre, 0)
  g = np.broadcast_to(ws[-1][:, 0], (len(v), ws[-1].shape[0]))
  for w, m in zip(ws[-2::-1], masks[::-1]):
    g = (g * m) @ w.T
  return g


def test_gradient_penalty_matches_hand_computation():
  disc = dim.PriorDiscriminator(3, hidden_dims=(7, 5), rngs=nnx.Rngs(3))
  v = np.asarray(jax.random.normal(jax.random.key(4), (9, 3)))
  gp = jax.jit(dim.gradient_penalty)(disc, jnp.asarray(v))
  grad = _np_mlp_input_grad(disc.layers, v)
  np.testing.assert_allclose(float(gp), np.mean(np.sum(grad ** 2, axis=1)),
                             rtol=1e-5)
  # A linear D has gradient w for every sample: GP = ||w||^2.
  lin = dim.PriorDiscriminator(3, hidden_dims=(), rngs=nnx.Rngs(5))
  w = np.asarray(lin.layers[0].kernel.value)[:, 0]
  np.testing.assert_allclose(float(dim.gradient_penalty(lin, jnp.asarray(v))),
                             np.sum(w.astype(np.float64) ** 2), rtol=1e-6)


def test_prior_loss_adds_the_penalty_on_both_batches():
  enc = _tiny_encoder()
  model = dim.DIMModel(enc, prior_disc=dim.PriorDiscriminator(
      enc.code_dim, hidden_dims=(16, 8), rngs=nnx.Rngs(2)))
  model.eval()
  batch = {"image": jax.random.uniform(jax.random.key(3), (8, 16, 16, 1)),
           "label": jnp.zeros((8,), jnp.int32)}
  key = jax.random.key(7)
  run = lambda gp: dim.make_dim_loss(estimator="jsd", beta=0.0, gamma=0.5,
                                     prior_gp=gp)(model, batch, key)
  loss0, m0 = run(0.0)
  loss1, m1 = run(2.0)
  assert "prior_gp" not in m0
  # loss = gamma * (prior loss + gp_weight * GP)
  np.testing.assert_allclose(float(loss1 - loss0), 0.5 * 2.0 * float(m1["prior_gp"]),
                             rtol=1e-5)
  y = model.encoder(batch["image"])[2]
  prior = jax.random.uniform(jax.random.split(key, 3)[1], y.shape)
  expect = 0.5 * (dim.gradient_penalty(model.prior_disc, prior)
                  + dim.gradient_penalty(model.prior_disc, jax.nn.sigmoid(y)))
  np.testing.assert_allclose(float(m1["prior_gp"]), float(expect), rtol=1e-5)


def test_non_saturating_is_the_default_and_names_are_checked():
  import inspect  # pylint: disable=g-import-not-at-top
  params = inspect.signature(dim.make_dim_loss).parameters
  assert params["prior_encoder_loss"].default == "non_saturating"
  assert params["prior_gp"].default == 1.0
  with pytest.raises(ValueError, match="prior_encoder_loss"):
    dim.make_dim_loss(prior_encoder_loss="wgan")


def test_occlude_zeroes_one_block_per_image():
  x = jnp.ones((5, 10, 12, 2))
  out = np.asarray(dim.occlude(x, jax.random.key(0), 4))
  for b in range(5):
    zero_HxW = out[b, :, :, 0] == 0
    assert zero_HxW.sum() == 16
    rows, cols = np.nonzero(zero_HxW)
    assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
    np.testing.assert_array_equal(out[b, :, :, 0], out[b, :, :, 1])
  with pytest.raises(ValueError, match="occlusion size"):
    dim.occlude(x, jax.random.key(0), 11)


def test_occlusion_feeds_y_from_the_occluded_image():
  enc = _tiny_encoder()
  model = dim.make_dim_model(enc, rngs=nnx.Rngs(1), local_shape=(8, 8, 4),
                             beta=1.0, gamma=0.0, local_embed_dim=16)
  model.eval()
  batch = {"image": jax.random.uniform(jax.random.key(3), (4, 16, 16, 1)),
           "label": jnp.zeros((4,), jnp.int32)}
  key = jax.random.key(9)
  _, m_occ = dim.make_dim_loss(estimator="jsd", gamma=0.0, occlusion=6)(
      model, batch, key)
  occluded = dim.occlude(batch["image"], jax.random.split(key, 3)[2], 6)
  y = model.encoder(occluded)[2]
  np.testing.assert_allclose(float(m_occ["y_norm"]),
                             float(jnp.linalg.norm(y, axis=1).mean()), rtol=1e-5)
  _, m_full = dim.make_dim_loss(estimator="jsd", gamma=0.0)(model, batch, key)
  assert abs(float(m_full["y_norm"]) - float(m_occ["y_norm"])) > 1e-4


def test_code_statistics_exact():
  y = jnp.array([[3.0, 4.0], [0.0, -5.0]])
  stats = dim.code_statistics(y)
  np.testing.assert_allclose(float(stats["y_norm"]), 5.0, rtol=1e-6)
  # |y| > log 99 = 4.595: 5 and -5 -> 1 of 4 entries (4.0 is inside)
  assert float(stats["code_saturated"]) == 0.25


def _tiny_encoder():
  from mi_jax.encoders.dim_conv import DIMConvEncoder  # pylint: disable=g-import-not-at-top
  return DIMConvEncoder(in_channels=1, channels=(4, 8, 8), fc_dim=16,
                        code_dim=6, local_layer=0, image_size=16,
                        rngs=nnx.Rngs(0))


def test_dim_mnist_config_wires_the_new_options():
  from mi_jax.training import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(
      "experiments/configs/dim_mnist.py:L,nce,occlusion,plain")
  assert (config.dim.alpha, config.dim.beta, config.dim.gamma) == (0.0, 1.0, 0.1)
  assert config.dim.estimator == "infonce" and config.dim.occlusion == 14
  assert config.dim.prior_encoder_loss == "non_saturating"
  assert config.dim.prior_gp == 1.0 and config.critic.local_critic == "plain"
  g = config_lib.load_config("experiments/configs/dim_mnist.py:G,noprior,minimax")
  assert (g.dim.alpha, g.dim.beta, g.dim.gamma) == (1.0, 0.0, 0.0)
  assert g.dim.prior_encoder_loss == "minimax" and g.dim.prior_gp == 0.0
  with pytest.raises(ValueError, match="unknown tokens"):
    config_lib.load_config("experiments/configs/dim_mnist.py:L,wgan")
  # The plug-in passes them on (mnist5k: no full-MNIST files needed).
  config.dataset = "mnist5k"
  method = dim.build(config, seed=0)
  opts = method.loss_fn.keywords
  assert (opts["occlusion"], opts["prior_gp"]) == (14, 1.0)
  assert opts["prior_encoder_loss"] == "non_saturating"
  assert isinstance(method.model.local_critic, dim.PlainLocalCritic)
  assert [e.name for e in method.evaluations] == ["probe", "mlp_ref", "suite"]
  assert [e.protocol for e in method.evaluations] == [
      "probe", "reference_mlp", "dim_suite"]
