"""Why 20 vmapped seeds are slower than 20 sequential runs on CPU: the pieces, side by side.

The §3.2 step (two MLPs 392-300-300-100, bilinear critic, InfoNCE, Adam,
batch 128), N seeds with per-seed batches. Interleaved over --rounds rounds
(medians of per-round ratios against `sequential`), each variant doing the
same seed-steps:
  sequential   N jitted single-seed calls per step (the reference)
  vmap         `jit(vmap_over_seeds(step))`: one call, batched matmuls with
               per-seed weights (dot_general batch dims)
  scan_seeds   `jit(map_over_seeds(step))`: one call, lax.map over seeds
  map_k        `jit(map_over_seeds(step, seeds_in_parallel=k))`: lax.map
               over groups of k vmapped seeds (--group k)
  vmap_nocond  `vmap` with the step's non-finite guard (`lax.cond`, a
               `select` over the whole state under vmap) traced away
  grad_vmap    forward + backward only (no optimizer), vmapped, vs
  grad_seq     the same per seed
  adam_vmap    the optimizer update only, vmapped, vs
  adam_seq     the same per seed
and the matmuls alone (forward shapes of the step), N per-seed weights:
  mm_loop      N separate [128,392]@[392,300]... chains in one jit
  mm_batched   the same as one batched dot_general ([N,128,392]@[N,392,300])
It prints what XLA made of the vmapped step (counts of dot / transpose /
copy ops in the optimized HLO) so a layout fix shows up as fewer copies.

Run: python experiments/benchmarks/seeds_profile.py --seeds 20 --rounds 5
"""
import argparse
import collections
import os
import re
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import optax
from flax import nnx

from mi_jax import critics, encoders, training, views
from mi_jax.objectives import multiview


def model_fn(key):
  rngs = nnx.Rngs(params=key)
  return multiview.MultiviewModel(
      encoders.MLP(392, (300, 300), 100, rngs=rngs),
      encoders.MLP(392, (300, 300), 100, rngs=rngs),
      critics.Bilinear(100, 100, rngs=rngs))


def hlo_counts(compiled) -> dict:
  """Counts of the ops that matter in an optimized HLO module."""
  text = compiled.as_text()
  ops = re.findall(r"= \S+ (dot|transpose|copy|select|fusion|custom-call)\(",
                   text)
  return dict(collections.Counter(ops))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, default=20)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--group", type=int, default=5)
  args = p.parse_args()
  n = args.seeds
  tx = optax.adam(1e-4)
  keys = jax.random.split(jax.random.key(0), n)
  graphdef, states = training.init_train_states(model_fn, tx, keys)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound="infonce")
  step = training.make_train_step(graphdef, tx, loss_fn)
  images = jax.random.uniform(jax.random.key(1), (n, 128, 28, 28, 1))
  jstep = jax.jit(step)
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=0))
  mstep = jax.jit(training.map_over_seeds(step, batch_axis=0))
  gstep = jax.jit(training.map_over_seeds(
      step, batch_axis=0, seeds_in_parallel=args.group))
  singles = [jax.tree.map(lambda x, i=i: x[i], states) for i in range(n)]

  def no_cond(pred, true_fn, false_fn, *operands):
    del pred, false_fn
    return true_fn(*operands)

  def step_nocond(*a):
    cond, jax.lax.cond = jax.lax.cond, no_cond  # only while tracing
    try:
      return step(*a)
    finally:
      jax.lax.cond = cond
  ncstep = jax.jit(jax.vmap(step_nocond, in_axes=(0, 0, 0)))

  def grad_of(state, images, key):
    model_loss = lambda p: loss_fn(
        training.merge_model(graphdef, p, state.rest), {"image": images},
        key)[0]
    return jax.grad(model_loss)(state.params)
  grad_v = jax.jit(jax.vmap(grad_of))
  grad_1 = jax.jit(grad_of)
  grads0 = grad_v(states, images, keys)

  def adam_of(state, grads):
    updates, opt = tx.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt
  adam_v = jax.jit(jax.vmap(adam_of))
  adam_1 = jax.jit(adam_of)
  grads1 = [jax.tree.map(lambda x, i=i: x[i], grads0) for i in range(n)]

  lowered = vstep.lower(states, {"image": images}, keys).compile()
  single = jstep.lower(singles[0], {"image": images[0]}, keys[0]).compile()
  print("optimized HLO op counts, vmapped step :", hlo_counts(lowered))
  print("optimized HLO op counts, one-seed step:", hlo_counts(single))
  flops_v = lowered.cost_analysis().get("flops", float("nan"))
  flops_1 = single.cost_analysis().get("flops", float("nan"))
  print(f"XLA flops: vmapped {flops_v / 1e9:.2f} G, one seed x {n} "
        f"{n * flops_1 / 1e9:.2f} G")

  # Matmul-only micro-benchmark: the forward chain of one encoder + critic.
  dims = [(392, 300), (300, 300), (300, 100)]
  ws = [jax.random.normal(jax.random.key(3 + i), (n,) + d) * 0.05
        for i, d in enumerate(dims)]
  x = jax.random.normal(jax.random.key(9), (n, 128, 392))

  def chain(x_BxI, w_list):
    h = x_BxI
    for w in w_list:
      h = jnp.tanh(h @ w)
    return h

  mm_loop = jax.jit(lambda x, ws: [chain(x[i], [w[i] for w in ws])
                                   for i in range(n)])
  mm_batched = jax.jit(lambda x, ws: chain_batched(x, ws))

  def chain_batched(x_NxBxI, w_list):
    h = x_NxBxI
    for w in w_list:
      h = jnp.tanh(jnp.einsum("nbi,nio->nbo", h, w))
    return h

  box = {"vmap": states, "scan_seeds": states, "map_k": states,
         "vmap_nocond": states,
         "sequential": list(singles)}
  batch = {"image": images}

  def stacked_runner(name, step_fn):
    """Runs `step_fn` on the stacked states kept in box[name]."""
    def run(steps):
      s = box[name]
      for _ in range(steps):
        s, m = step_fn(s, batch, keys)
      box[name] = s
      jax.block_until_ready(m["loss"])
    return run

  run_vmap = stacked_runner("vmap", vstep)
  run_scan = stacked_runner("scan_seeds", mstep)
  run_group = stacked_runner("map_k", gstep)
  run_nocond = stacked_runner("vmap_nocond", ncstep)

  def run_seq(steps):
    ss = box["sequential"]
    for i in range(n):
      for _ in range(steps):
        ss[i], m = jstep(ss[i], {"image": images[i]}, keys[i])
    jax.block_until_ready(m["loss"])

  def pair(vfn, vargs, one_fn, one_args):
    def v(steps):
      for _ in range(steps):
        out = vfn(*vargs)
      jax.block_until_ready(out)

    def one(steps):
      for _ in range(steps):
        outs = [one_fn(*a) for a in one_args]
      jax.block_until_ready(outs)
    return v, one

  grad_vmap, grad_seq = pair(
      grad_v, (states, images, keys), grad_1,
      [(singles[i], images[i], keys[i]) for i in range(n)])
  adam_vmap, adam_seq = pair(adam_v, (states, grads0), adam_1,
                             [(singles[i], grads1[i]) for i in range(n)])

  def run_mm(fn):
    def go(steps):
      for _ in range(steps * 3):  # ~ a step's forward+backward matmul count
        out = fn(x, ws)
      jax.block_until_ready(out)
    return go

  runners = {"sequential": run_seq, "vmap": run_vmap, "scan_seeds": run_scan,
             "map_k": run_group, "vmap_nocond": run_nocond,
             "grad_vmap": grad_vmap, "grad_seq": grad_seq,
             "adam_vmap": adam_vmap, "adam_seq": adam_seq,
             "mm_loop": run_mm(mm_loop), "mm_batched": run_mm(mm_batched)}
  for fn in runners.values():
    fn(1)
  times = {k: [] for k in runners}
  for _ in range(args.rounds):
    for k, fn in runners.items():
      t0 = time.perf_counter()
      fn(args.steps)
      times[k].append(time.perf_counter() - t0)
  print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"{n} seeds x {args.steps} steps x {args.rounds} rounds")
  for k, ref in (("vmap", "sequential"), ("scan_seeds", "sequential"),
                 ("map_k", "sequential"), ("vmap_nocond", "sequential"),
                 ("grad_vmap", "grad_seq"), ("adam_vmap", "adam_seq")):
    r = statistics.median(s / t for s, t in zip(times[ref], times[k]))
    print(f"  {k} / {ref} seed-steps/s: {r:.2f}x  (median time "
          f"{statistics.median(times[k]):.3f} s vs "
          f"{statistics.median(times[ref]):.3f} s)")
  r = statistics.median(a / b for a, b in zip(times["mm_loop"],
                                              times["mm_batched"]))
  print(f"  matmuls: batched / loop speed {r:.2f}x  (median "
        f"{statistics.median(times['mm_batched']):.3f} s vs "
        f"{statistics.median(times['mm_loop']):.3f} s)")


if __name__ == "__main__":
  main()
