"""CMC: core-view / full-graph losses vs hand-written sums, the memory bank (own entry
never a negative, momentum update, eval mode, checkpoint/resume bitwise), and
training under the jitted, sharded and vmapped-seed steps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mi_jax import training
from mi_jax.objectives import cmc
from mi_jax.training import checkpoint, sharding


class _Linear(nnx.Module):
  def __init__(self, d_in, d_out, *, rngs):
    self.out_dim = d_out
    self.lin = nnx.Linear(d_in, d_out, rngs=rngs)

  def __call__(self, x):
    return self.lin(x.reshape(x.shape[0], -1))


def _views(batch, key):
  del key
  return [batch["x"][:, v] for v in range(batch["x"].shape[1])]


def _model(key, num_views=3, bank_size=0, **kw):
  rngs = nnx.Rngs(key)
  return cmc.CMCModel([_Linear(4, 5, rngs=rngs) for _ in range(num_views)],
                      temperature=0.1, bank_size=bank_size, rngs=rngs, **kw)


def _batch(b=8, num_views=3, n=40, seed=0):
  x = jax.random.normal(jax.random.key(seed), (b, num_views, 4))
  index = jax.random.permutation(jax.random.key(seed + 1), n)[:b]
  return {"x": x, "index": index.astype(jnp.int32)}


def _np_codes(model, batch):
  z = [np.asarray(enc(v), np.float64) for enc, v in
       zip(model.encoders, _views(batch, None))]
  return [zi / np.linalg.norm(zi, axis=1, keepdims=True) for zi in z]


def _np_infonce_diag(s):
  lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
  return np.mean(np.diag(s) - lse) + math.log(s.shape[0])


def test_view_pairs():
  assert cmc.view_pairs(4, "core") == ((0, 1), (0, 2), (0, 3))
  assert cmc.view_pairs(3, "full") == ((0, 1), (0, 2), (1, 2))
  with pytest.raises(ValueError, match="graph"):
    cmc.view_pairs(3, "star")


@pytest.mark.parametrize("graph,pairs", [
    ("core", [(0, 1), (0, 2), (0, 3)]),
    ("full", [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])])
def test_in_batch_loss_is_the_sum_over_view_pairs(graph, pairs):
  model = _model(0, num_views=4)
  batch = _batch(num_views=4)
  loss, metrics = jax.jit(cmc.make_cmc_loss(views_fn=_views, graph=graph))(
      model, batch, jax.random.key(0))
  z = _np_codes(model, batch)
  want = 0.0
  for a, b in pairs:     # L(a, b) = -(I(a -> b) + I(b -> a))
    s = z[a] @ z[b].T / 0.1
    want -= _np_infonce_diag(s) + _np_infonce_diag(s.T)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  assert len([k for k in metrics if k.startswith("mi/")]) == 2 * len(pairs)
  np.testing.assert_allclose(float(metrics["mi"]), -want / (2 * len(pairs)),
                             rtol=1e-5)


def test_own_entry_is_never_a_negative():
  n = 7
  r = jnp.arange(n - 1)           # every possible draw r in {0..N-2}
  idx = jnp.arange(n)             # every possible own index
  neg = np.asarray(cmc.negative_indices(r, idx))
  for i in range(n):
    # The draws map one-to-one onto the other N - 1 entries.
    assert sorted(neg[i].tolist()) == [j for j in range(n) if j != i]
  # And in the loss's own draws, over many steps.
  draws = jax.random.randint(jax.random.key(0), (200, 64), 0, n - 1)
  served = jax.vmap(cmc.negative_indices, (0, None))(draws, idx)
  assert not np.any(np.asarray(served) == np.asarray(idx)[None, :, None])


def test_bank_scores_equal_the_gathered_negatives():
  za = jax.random.normal(jax.random.key(0), (5, 3))
  pos = jax.random.normal(jax.random.key(1), (5, 3))
  bank = jax.random.normal(jax.random.key(2), (9, 3))
  idx = jnp.array([0, 8, 3, 4, 5])
  r = jnp.array([0, 3, 7, 4, 2, 3])
  got = cmc.bank_scores(za, pos, bank, r, idx, 0.5)
  neg = np.asarray(cmc.negative_indices(r, idx))
  want_neg = np.einsum("bd,bkd->bk", np.asarray(za), np.asarray(bank)[neg])
  want_pos = np.sum(np.asarray(za) * np.asarray(pos), 1)
  np.testing.assert_allclose(got, np.c_[want_pos, want_neg] / 0.5, rtol=1e-5)


def test_bank_loss_and_momentum_update_match_hand_arithmetic():
  model = _model(0, num_views=2, bank_size=40, num_negatives=6, momentum=0.5,
                 positive="batch")
  batch = _batch(num_views=2)
  bank0 = np.asarray(model.bank[...], np.float64)
  z = _np_codes(model, batch)
  key = jax.random.key(3)
  loss, _ = cmc.cmc_loss(model, batch, key, views_fn=_views, graph="core")
  # The loss's draws: key -> (views, negatives); r ~ U{0..N-2} per view.
  _, key_neg = jax.random.split(key)
  r = np.asarray(jax.random.randint(key_neg, (2, 6), 0, 39))
  idx = np.asarray(batch["index"])
  want = 0.0
  for anchor, target in ((0, 1), (1, 0)):
    rows = []
    for i in range(8):
      negs = [j + (j >= idx[i]) for j in r[target]]
      assert idx[i] not in negs
      rows.append([z[anchor][i] @ z[target][i]]
                  + [z[anchor][i] @ bank0[target, j] for j in negs])
    s = np.array(rows) / 0.1
    lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
    want -= np.mean(s[:, 0] - lse) + math.log(7)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  bank1 = np.asarray(model.bank[...], np.float64)
  for v in range(2):
    mixed = 0.5 * bank0[v, idx] + 0.5 * z[v]
    np.testing.assert_allclose(
        bank1[v, idx], mixed / np.linalg.norm(mixed, axis=1, keepdims=True),
        rtol=1e-5, atol=1e-6)
    others = np.setdiff1d(np.arange(40), idx)
    np.testing.assert_array_equal(bank1[v, others], bank0[v, others])
  # Eval mode reads the bank and leaves it alone.
  model.eval()
  cmc.cmc_loss(model, batch, key, views_fn=_views)
  np.testing.assert_array_equal(np.asarray(model.bank[...]), bank1)


@pytest.mark.parametrize("positive", ["batch", "bank"])
def test_bank_positive_reads_the_bank(positive):
  batch = _batch(num_views=2)
  moved = dict(batch, x=batch["x"].at[:, 1].multiply(-3.0))
  out = []
  for b in (batch, moved):
    model = _model(0, num_views=2, bank_size=40, num_negatives=6,
                   positive=positive)
    out.append(float(cmc.cmc_loss(model, b, jax.random.key(0),
                                  views_fn=_views)[1]["mi/0-1"]))
  # I(0 -> 1) reads view 1 only through its positive: with the bank positive
  # (reference code) moving the current z_1 changes nothing.
  if positive == "bank":
    assert out[0] == out[1]
  else:
    assert abs(out[0] - out[1]) > 1e-3


def _train(state, step, batches_and_keys):
  for batch, key in batches_and_keys:
    state, _ = step(state, batch, key)
  return state


def test_bank_survives_checkpoint_and_resume_bitwise(tmp_path):
  tx = optax.adam(1e-2)
  graphdef, state0 = training.init_train_state(
      _model(0, bank_size=40, num_negatives=6), tx)
  step = jax.jit(training.make_train_step(
      graphdef, tx, cmc.make_cmc_loss(views_fn=_views, graph="full")))
  plan = [(_batch(seed=t), jax.random.key(t)) for t in range(4)]
  straight = _train(state0, step, plan)
  half = _train(state0, step, plan[:2])
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(2, half, {"epoch": 0, "batch": 2})
  ckpt.close()
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  _, restored, _ = ckpt.restore_latest(checkpoint.abstract_like(state0))
  ckpt.close()
  np.testing.assert_array_equal(np.asarray(restored.rest["bank"][...]),
                                np.asarray(half.rest["bank"][...]))
  resumed = _train(restored, step, plan[2:])
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(straight.rest["bank"][...]),
                            np.asarray(state0.rest["bank"][...]))


@pytest.mark.parametrize("bank_size", [0, 40])
def test_sharded_step_equals_single_device(bank_size):
  tx = optax.adam(1e-2)
  graphdef, state = training.init_train_state(
      _model(0, bank_size=bank_size, num_negatives=6), tx)
  step = training.make_train_step(
      graphdef, tx, cmc.make_cmc_loss(views_fn=_views, graph="core"))
  mesh = sharding.make_mesh()
  sstep = sharding.shard_train_step(step, mesh)
  s1, s8 = state, sharding.replicate(state, mesh)
  for t in range(3):
    batch = _batch(b=16, seed=t)
    s1, m1 = jax.jit(step)(s1, batch, jax.random.key(t))
    s8, m8 = sstep(s8, sharding.shard_batch(batch, mesh), jax.random.key(t))
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(s1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.slow  # CI time: 25-60 s on 2 cores; run with -m slow
def test_vmapped_seeds_equal_each_seed_alone():
  tx = optax.sgd(0.1)
  keys = jax.random.split(jax.random.key(0), 2)
  graphdef, states = training.init_train_states(
      lambda k: _model(k, bank_size=40, num_negatives=6), tx, keys)
  step = training.make_train_step(
      graphdef, tx, cmc.make_cmc_loss(views_fn=_views, graph="full"))
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=None))
  singles = [training.unstack_state(states, i) for i in range(2)]
  step_keys = jax.random.split(jax.random.key(1), 2)
  for t in range(2):
    batch = _batch(seed=t)
    states, vm = vstep(states, batch, step_keys)
    for i in range(2):
      singles[i], m = jax.jit(step)(singles[i], batch, step_keys[i])
      np.testing.assert_allclose(vm["loss"][i], m["loss"], rtol=1e-5,
                                 atol=1e-5)
  for i in range(2):
    np.testing.assert_allclose(
        np.asarray(training.unstack_state(states, i).rest["bank"][...]),
        np.asarray(singles[i].rest["bank"][...]), rtol=1e-5, atol=1e-6)
