"""Train-step speed: mi_jax vs hand-written plain JAX vs PyTorch; 20 seeds vmapped vs sequential.

The step of Tschannen et al. 2020 §3.2: two MLP encoders 392-300-300-100 on
the top / bottom halves of 28x28 images, a bilinear critic, InfoNCE, Adam
(lr 1e-4), batch 128. Synthetic images (speed does not depend on pixels).

Measured, interleaved over `--rounds` rounds (the median is printed):
  mi_jax        jax.jit(make_train_step(...), donate_argnums=0), one call per step
  mi_jax/scan   jax.jit(make_multi_step(step, K)): K steps per call (lax.scan)
  plain_jax     hand-written pure jnp + optax step, jitted, donated (no NNX)
  plain/scan    the same in a lax.scan of K steps
  pytorch       the same step in eager PyTorch, 1 thread and all threads
                (skipped if torch is missing); the faster is the reference
  seeds         20 seeds vmapped (one program, per-seed batches), and
                `map_over_seeds` (one program, lax.map: one seed at a time),
                vs the 20 runs one after the other with the single-seed step
Targets (issue 3): mi_jax >= 1.5x PyTorch; >= 0.9x plain JAX; vmapped 20
seeds >= 3x the seed-steps/s of 20 sequential runs (issue 13: >= 1.0x on
this CPU; the ratio rows print against 1.0x).

`--breakdown --kernels` times each XLA:CPU kernel of the peer and of the
library step (and a few variants) with `jax.profiler`, median per kernel, and
lists the library's kernels by cost (docs/training.md, "kernel by kernel").

`--breakdown` instead prints the process CPU time per scanned step of the
library step with each of its extras removed or changed (the gradient norm's
form, `param_norm`, the non-finite guard, the bound) beside the peer; run it
with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false. `--batch` sets the batch
size (128).

Run (one CPU device; takes a few minutes on a busy 2-core machine):
  python experiments/benchmarks/step_speed.py --rounds 9 --steps 30 --scan 10 \
      --seeds 20 --seed_steps 2

Measured 2026-11-23 with that command on a 2-core AMD EPYC VM shared with
other jobs (load average ~10, so single rounds vary 2x; ratios are medians of
per-round ratios): mi_jax 97.5 steps/s, plain JAX 103.8, PyTorch 55.1 (1
thread; 4.0 with 2 threads, whose OpenMP threads stall under contention);
mi_jax / PyTorch 1.89x, mi_jax / plain JAX 0.96x (scan: 0.91x), 20 seeds
vmapped / sequential 0.55x. The last misses its 3x target on CPU: each seed's
step is compute-bound (~0.36 GFLOP), so batching seeds cannot add throughput
there, and XLA:CPU runs the batched (per-seed-weight) matmuls that vmap
produces slower than the same matmuls one by one. The vmapped program is for
accelerators, where one seed leaves most of the device idle.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mi_jax import bounds, critics, encoders, training, views
from mi_jax.objectives import multiview

B, HALF, HID, OUT, LR = 128, 392, 300, 100, 1e-4
POOL = 4  # distinct batches cycled through (already on device)


def _images(key, lead=()):
  return jax.random.uniform(key, (*lead, B, 28, 28, 1), jnp.float32)


# --------------------------------------------------------------------- mi_jax
def mi_jax_model(key):
  """The §3.2 model from library pieces."""
  rngs = nnx.Rngs(key)
  g1 = encoders.MLP(HALF, (HID, HID), OUT, rngs=rngs)
  g2 = encoders.MLP(HALF, (HID, HID), OUT, rngs=rngs)
  return multiview.MultiviewModel(g1, g2, critics.Bilinear(OUT, OUT, rngs=rngs))


def mi_jax_step():
  """`(graphdef, tx, step)` of the library's train step."""
  tx = optax.adam(LR)
  loss_fn = multiview.make_multiview_loss(
      views=views.make_views("top_bottom", flatten=True), bound=bounds.infonce)
  graphdef, _ = training.init_train_state(mi_jax_model(jax.random.key(0)), tx)
  return graphdef, tx, training.make_train_step(graphdef, tx, loss_fn)


# ------------------------------------------------------------------ plain JAX
def plain_init(key):
  """Params as a dict of arrays: two MLPs and the bilinear kernel."""
  dims = (HALF, HID, HID, OUT)
  params = {}
  keys = iter(jax.random.split(key, 8))
  for enc in ("g1", "g2"):
    params[enc] = [
        {"w": jax.random.normal(next(keys), (a, b)) / np.sqrt(a),
         "b": jnp.zeros((b,))} for a, b in zip(dims[:-1], dims[1:])]
  params["W"] = jax.random.normal(next(keys), (OUT, OUT)) / OUT
  return params


def _mlp(layers, x):
  for i, layer in enumerate(layers):
    x = x @ layer["w"] + layer["b"]
    if i < len(layers) - 1:
      x = jax.nn.relu(x)
  return x


def plain_loss(params, images):
  x_BxP = images.reshape(images.shape[0], -1)
  z1, z2 = _mlp(params["g1"], x_BxP[:, :HALF]), _mlp(params["g2"], x_BxP[:, HALF:])
  scores_BxB = z1 @ params["W"] @ z2.T
  mi = jnp.mean(jnp.diag(scores_BxB) - jax.nn.logsumexp(scores_BxB, axis=1)
                ) + jnp.log(scores_BxB.shape[0])
  return -mi


def plain_step_fn(tx):
  """Hand-written step `(params, opt_state), images, key -> ((...), loss)`."""

  def step(carry, images, key):
    del key
    params, opt_state = carry
    loss, grads = jax.value_and_grad(plain_loss)(params, images)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return step


def _scan(step, k):
  def multi(carry, batches, key):
    keys = jax.random.split(key, k)
    return jax.lax.scan(lambda c, xs: step(c, *xs), carry, (batches, keys))
  return multi


# -------------------------------------------------------------------- PyTorch
def torch_runner(num_threads):
  """Returns `(run(n_steps), version)` for the PyTorch step, or None without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  torch.manual_seed(0)
  nn = torch.nn

  def mlp():
    return nn.Sequential(nn.Linear(HALF, HID), nn.ReLU(), nn.Linear(HID, HID),
                         nn.ReLU(), nn.Linear(HID, OUT))

  g1, g2 = mlp(), mlp()
  w = nn.Parameter(torch.randn(OUT, OUT) / OUT)
  opt = torch.optim.Adam([*g1.parameters(), *g2.parameters(), w], lr=LR)
  pool = [torch.rand(B, 784) for _ in range(POOL)]

  def step(x):
    scores = g1(x[:, :HALF]) @ w @ g2(x[:, HALF:]).T
    mi = (scores.diagonal() - torch.logsumexp(scores, 1)).mean() + np.log(B)
    loss = -mi
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  def run(n):
    torch.set_num_threads(num_threads)
    for t in range(n):
      loss = step(pool[t % POOL])
    return float(loss.detach())

  return run, torch.__version__


# ------------------------------------------------------------ --breakdown
def variant_step(graphdef, tx, loss_fn, *, grad_norm=training.global_norm,
                 guard=True, param_norm=optax.global_norm):
  """The library step (`make_train_step`) with one of its extras changed.

  `grad_norm`: how the gradient norm is computed (None: not at all, and then
  no guard); `guard`: the `lax.cond` that skips non-finite updates;
  `param_norm`: how the `param_norm` metric is computed (None: not at all).
  With the defaults it computes what `make_train_step` computes.
  """

  def loss_of(params, rest, batch, key):
    model = training.merge_model(graphdef, params, rest)
    model.train()
    loss, aux = loss_fn(model, batch, key)
    return loss, (aux, training.split_model(model)[2])

  def apply(op):
    state, grads, rest = op
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return training.TrainState(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        rest=rest, opt_state=opt_state)

  def step(state, batch, key):
    (loss, (aux, rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(
        state.params, state.rest, batch, key)
    metrics = dict(aux, loss=loss)
    if grad_norm is not None:
      metrics["grad_norm"] = grad_norm(grads)
    if guard and grad_norm is not None:
      finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
      new = jax.lax.cond(finite, apply, lambda op: op[0], (state, grads, rest))
    else:
      new = apply((state, grads, rest))
    if param_norm is not None:
      metrics["param_norm"] = param_norm(new.params)
    return new, metrics

  return step


def diagonal_infonce(scores_BxB):
  """The peer's InfoNCE: mean_i [s_ii - logsumexp_j s_ij] + log B."""
  return jnp.mean(jnp.diag(scores_BxB) - jax.nn.logsumexp(scores_BxB, axis=1)
                  ) + jnp.log(scores_BxB.shape[0])


def breakdown(args):
  """Process CPU time per step of the library step's variants, in lax.scan.

  CPU time (not wall time) so that other jobs on the machine shift it little;
  run it with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false for one thread.
  """
  k = args.scan
  graphdef, tx, _ = mi_jax_step()
  concat_norm = training.global_norm
  views_fn = views.make_views("top_bottom", flatten=True)
  lib_loss = multiview.make_multiview_loss(views=views_fn, bound=bounds.infonce)
  diag_loss = multiview.make_multiview_loss(views=views_fn,
                                            bound=diagonal_infonce)
  steps = {
      "mi_jax (library step)": training.make_train_step(graphdef, tx, lib_loss),
      "  same, rebuilt here": variant_step(graphdef, tx, lib_loss),
      "  grad_norm per leaf (optax, before)": variant_step(
          graphdef, tx, lib_loss, grad_norm=optax.global_norm),
      "  no param_norm": variant_step(graphdef, tx, lib_loss,
                                      param_norm=None),
      "  param_norm concatenated": variant_step(
          graphdef, tx, lib_loss, param_norm=training.global_norm),
      "  no grad_norm, no guard": variant_step(graphdef, tx, lib_loss,
                                               grad_norm=None),
      "  peer's diagonal InfoNCE": variant_step(graphdef, tx, diag_loss),
      "  diagonal InfoNCE, no extras": variant_step(
          graphdef, tx, diag_loss, grad_norm=None, param_norm=None),
  }
  if args.kernels:
    steps = {"mi_jax (library step)": steps["mi_jax (library step)"],
             "  grad_norm per leaf (optax, before)":
                 steps["  grad_norm per leaf (optax, before)"],
             "  no grad_norm, no guard, no param_norm": variant_step(
                 graphdef, tx, lib_loss, grad_norm=None, param_norm=None),
             "  peer's diagonal InfoNCE": steps["  peer's diagonal InfoNCE"]}
  del concat_norm
  key = jax.random.key(0)
  batches = {"image": _images(jax.random.key(5), (k,))}
  runners = {}
  params = plain_init(jax.random.key(1))
  pm = jax.jit(_scan(plain_step_fn(tx), k), donate_argnums=0)
  pbox = {"c": (params, tx.init(params))}

  def run_plain():
    pbox["c"], loss = pm(pbox["c"], batches["image"], key)
    loss.block_until_ready()
  runners["plain JAX (peer)"] = run_plain
  for name, fn in steps.items():
    jm = jax.jit(training.make_multi_step(fn, k), donate_argnums=0)
    _, state = training.init_train_state(mi_jax_model(jax.random.key(1)), tx)
    box = {"s": state}

    def run(jm=jm, box=box):
      box["s"], m = jm(box["s"], batches, key)
      m["loss"].block_until_ready()
    run.jitted_text = (lambda jm=jm, box=box: jm.lower(
        box["s"], batches, key).compile().as_text())
    runners[name] = run
  for fn in runners.values():
    fn()
  cpu = {name: [] for name in runners}
  if args.kernels:
    kernels(args, runners, cpu)
    return
  for _ in range(args.rounds):
    for name, fn in runners.items():
      c0 = time.process_time()
      fn()
      cpu[name].append((time.process_time() - c0) / k)
  ref = statistics.median(cpu["plain JAX (peer)"])
  print(f"\nCPU ms per step ({k} steps per lax.scan call, median of "
        f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f}):")
  for name, v in cpu.items():
    med = statistics.median(v)
    print(f"  {name:38s} {med * 1e3:7.2f}  ({med / ref:.3f}x the peer)")


def kernels(args, runners, cpu):
  """`--kernels`: the XLA:CPU kernels of each variant, timed by the profiler.

  Every round runs each variant once inside `jax.profiler.trace`; a kernel's
  cost per step is its *median* duration times its count per step, which
  other jobs on the machine shift little as long as kernels are shorter than
  a scheduler slice (true at batch 128, not at 1,024). Prints the sum per
  variant (and the process CPU time beside it) and the kernels whose cost
  differs most from the peer's, with their shape and JAX op name.
  """
  import bisect  # pylint: disable=g-import-not-at-top
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from jax._src.lib import _profile_data  # pylint: disable=g-import-not-at-top
  k = args.scan
  trace_dir = tempfile.mkdtemp(prefix="step_kernels_")
  with jax.profiler.trace(trace_dir):
    for _ in range(args.rounds):
      for name, fn in runners.items():
        c0 = time.process_time()
        with jax.profiler.TraceAnnotation("RUN:" + name):
          fn()
        cpu[name].append((time.process_time() - c0) / k)
  pb = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
  profile = _profile_data.ProfileData.from_file(pb)
  windows = sorted(
      (e.start_ns, e.start_ns + e.duration_ns, e.name[4:])
      for plane in profile.planes for line in plane.lines
      if line.name == "python" for e in line.events
      if e.name.startswith("RUN:"))
  starts = [w[0] for w in windows]
  durations = {n: collections.defaultdict(list) for n in runners}
  for plane in profile.planes:
    for line in plane.lines:
      if line.name == "python":
        continue
      for ev in line.events:
        if ev.name.startswith(("Thunk", "Threadpool", "end:", "while",
                               "cond")):
          continue  # executor bookkeeping and enclosing loop / conditional
        i = bisect.bisect_right(starts, ev.start_ns) - 1
        if i >= 0 and ev.start_ns < windows[i][1]:
          durations[windows[i][2]][ev.name].append(ev.duration_ns)
  n_steps = args.rounds * k
  cost = {n: {kn: statistics.median(v) * len(v) / n_steps / 1e3
              for kn, v in d.items()} for n, d in durations.items()}
  total = {n: sum(c.values()) for n, c in cost.items()}
  peer = "plain JAX (peer)"
  print(f"\nkernel time per step (sum of median kernel durations, us) and "
        f"process CPU time; {args.rounds} rounds of {k} scanned steps, batch "
        f"{B}, load average {os.getloadavg()[0]:.1f}:")
  for n in runners:
    count = sum(len(v) for v in durations[n].values()) / n_steps
    print(f"  {n:40s} {total[n]:9.1f} ({total[n] / total[peer]:.3f}x)   cpu "
          f"{statistics.median(cpu[n]) * 1e6:9.1f} "
          f"({statistics.median(cpu[n]) / statistics.median(cpu[peer]):.3f}x)"
          f"   {count:.0f} kernels")
  lib = "mi_jax (library step)"
  text = runners[lib].jitted_text()
  info = {}
  for line in text.splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) [\w-]+\(", line)
    if m:
      op = re.search(r'op_name="([^"]*)"', line)
      info[m.group(1)] = (m.group(2)[:24], (op.group(1) if op else "")[-50:])
  def category(op):
    if "cond/" in op:
      return "optimizer update (in the guard's lax.cond)"
    if "jvp" in op:
      return "forward + backward (loss, bound, critic)"
    if op.endswith(("concatenate", "reduce_sum", "square", "sqrt")):
      return "grad_norm / param_norm"
    return "other (loop, metrics, no op name)"

  groups = collections.Counter()
  for name, us in cost[lib].items():
    groups[category(info.get(name, ("", ""))[1])] += us
  print("\nthe library step by part (us per step):")
  for g, us in groups.most_common():
    print(f"  {g:48s} {us:9.1f}")
  print("\nthe library step's kernels costing >= 3 us per step:")
  for name, us in sorted(cost[lib].items(), key=lambda kv: -kv[1]):
    if us >= 3:
      shape, op = info.get(name, ("", ""))
      print(f"  {name:38s} {us:8.1f}  {shape:24s} {op}")


# -------------------------------------------------------------------- timing
def _timed(fn, n):
  t0 = time.perf_counter()
  fn(n)
  return n / (time.perf_counter() - t0)


def main():
  global B
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=40, help="steps per measurement")
  p.add_argument("--scan", type=int, default=10, help="steps per scan call")
  p.add_argument("--seeds", type=int, default=20)
  p.add_argument("--seed_steps", type=int, default=4,
                 help="steps per seed in the seeds comparison")
  p.add_argument("--batch", type=int, default=B, help="batch size")
  p.add_argument("--kernels", action="store_true",
                 help="with --breakdown: time every XLA:CPU kernel with the "
                 "profiler (median per kernel; see `kernels`)")
  p.add_argument("--breakdown", action="store_true",
                 help="only the CPU-time breakdown of the library step's "
                 "extras against the peer (see `breakdown`)")
  args = p.parse_args()
  B = args.batch
  if args.breakdown:
    breakdown(args)
    return
  k_steps = args.scan
  n = args.steps - args.steps % k_steps
  key = jax.random.key(0)
  pool = [_images(jax.random.key(i)) for i in range(POOL)]
  pool_k = [_images(jax.random.key(i), (k_steps,)) for i in range(2)]

  # mi_jax, one call per step and K steps per call.
  graphdef, tx, step = mi_jax_step()
  _, state = training.init_train_state(mi_jax_model(jax.random.key(1)), tx)
  jstep = jax.jit(step, donate_argnums=0)
  jmulti = jax.jit(training.make_multi_step(step, k_steps), donate_argnums=0)
  box = {"s": state, "sm": jax.tree.map(jnp.copy, state)}

  def run_mi(m):
    s = box["s"]
    for t in range(m):
      s, metrics = jstep(s, {"image": pool[t % POOL]}, key)
    box["s"] = s
    metrics["loss"].block_until_ready()

  def run_mi_scan(m):
    s = box["sm"]
    for t in range(m // k_steps):
      s, metrics = jmulti(s, {"image": pool_k[t % 2]}, key)
    box["sm"] = s
    metrics["loss"].block_until_ready()

  # Plain JAX.
  pstep = plain_step_fn(tx)
  params = plain_init(jax.random.key(1))
  pbox = {"c": (params, tx.init(params))}
  pbox["cm"] = jax.tree.map(jnp.copy, pbox["c"])
  jp = jax.jit(pstep, donate_argnums=0)
  jpm = jax.jit(_scan(pstep, k_steps), donate_argnums=0)

  def run_plain(m):
    c = pbox["c"]
    for t in range(m):
      c, loss = jp(c, pool[t % POOL], key)
    pbox["c"] = c
    loss.block_until_ready()

  def run_plain_scan(m):
    c = pbox["cm"]
    for t in range(m // k_steps):
      c, loss = jpm(c, pool_k[t % 2], key)
    pbox["cm"] = c
    loss.block_until_ready()

  # Seeds: vmapped program vs sequential runs of the single-seed step.
  ns = args.seeds
  seed_keys = jax.random.split(jax.random.key(2), ns)
  _, states = training.init_train_states(mi_jax_model, tx, seed_keys)
  vstep = jax.jit(training.vmap_over_seeds(step, batch_axis=0),
                  donate_argnums=0)
  mstep = jax.jit(training.map_over_seeds(step, batch_axis=0),
                  donate_argnums=0)
  seed_pool = [_images(jax.random.key(10 + i), (ns,)) for i in range(2)]
  singles = [training.unstack_state(states, i) for i in range(ns)]
  sbox = {"v": states, "m": jax.tree.map(jnp.copy, states),
          "singles": singles}

  def run_vmap(m):
    s = sbox["v"]
    for t in range(m):
      s, metrics = vstep(s, {"image": seed_pool[t % 2]}, seed_keys)
    sbox["v"] = s
    metrics["loss"].block_until_ready()

  def run_mapped(m):
    s = sbox["m"]
    for t in range(m):
      s, metrics = mstep(s, {"image": seed_pool[t % 2]}, seed_keys)
    sbox["m"] = s
    metrics["loss"].block_until_ready()

  def run_sequential(m):
    for i in range(ns):
      s = sbox["singles"][i]
      for t in range(m):
        s, metrics = jstep(s, {"image": seed_pool[t % 2][i]}, seed_keys[i])
      sbox["singles"][i] = s
    metrics["loss"].block_until_ready()

  runners = {"mi_jax": (run_mi, n), "mi_jax/scan": (run_mi_scan, n),
             "plain_jax": (run_plain, n), "plain/scan": (run_plain_scan, n)}
  # PyTorch with 1 thread and with all cores: on a busy machine its OpenMP
  # threads can stall each other, so the faster of the two is the reference.
  torch_threads = sorted({1, os.cpu_count() or 1})
  for nt in torch_threads:
    tr = torch_runner(nt)
    if tr is None:
      print("PyTorch: not installed, skipped (pip install torch==2.13.0).")
      break
    runners[f"pytorch_{nt}thr"] = (tr[0], n)
    print(f"PyTorch {tr[1]}, {nt} thread(s)")
  runners["seeds_vmapped"] = (run_vmap, args.seed_steps)
  runners["seeds_mapped"] = (run_mapped, args.seed_steps)
  runners["seeds_sequential"] = (run_sequential, args.seed_steps)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({os.cpu_count()} CPUs); batch {B}; {n} steps x {args.rounds} rounds")

  for fn, m in runners.values():   # compile + warm up
    fn(max(k_steps, 1) if m == n else 1)
  rates = {name: [] for name in runners}
  for r in range(args.rounds):
    for name, (fn, m) in runners.items():
      rates[name].append(_timed(fn, m))
    print(f"round {r}: " + ", ".join(
        f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)
  med = {k: statistics.median(v) for k, v in rates.items()}
  seed_rate = {k: med[k] * ns for k in
               ("seeds_vmapped", "seeds_mapped", "seeds_sequential")}
  print("\nmedian steps/s (seed-steps/s for the seed rows):")
  for k, v in med.items():
    print(f"  {k:18s} {seed_rate.get(k, v):9.1f}")

  def ratio(a, b, target):
    per_round = statistics.median(x / y for x, y in zip(rates[a], rates[b]))
    ok = "ok" if per_round >= target else "BELOW TARGET"
    print(f"  {a} / {b}: {per_round:.2f}x (target >= {target}x) {ok}")

  print("\nratios (median over rounds of the per-round ratio):")
  torch_rows = [k for k in rates if k.startswith("pytorch")]
  if torch_rows:
    best = max(torch_rows, key=lambda k: med[k])
    print(f"  (PyTorch reference: {best}, the faster thread setting)")
    ratio("mi_jax", best, 1.5)
    ratio("mi_jax/scan", best, 1.5)
  ratio("mi_jax", "plain_jax", 0.95)
  ratio("mi_jax/scan", "plain/scan", 0.95)
  ratio("seeds_vmapped", "seeds_sequential", 1.0)
  ratio("seeds_mapped", "seeds_sequential", 1.0)


if __name__ == "__main__":
  main()
