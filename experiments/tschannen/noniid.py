"""§4 of Tschannen et al. (ICLR 2020): I_NCE and I_NWJ on non-i.i.d. negatives.

Synthetic task of the paper's public notebook: every training step draws one
z ~ N(0, [[1, -0.5], [-0.5, 1]]) shared by the whole batch and i.i.d.
eps_i ~ N(0, [[1, 0.9], [0.9, 1]]); (x_i, y_i) = z + eps_i. Each pair has the
marginal N(0, [[2, 0.4], [0.4, 2]]), so I(X; Y) = -1/2 log(1 - 0.2^2)
= 0.0204 nats, but the samples within a batch are dependent and the "bounds"
can exceed the true MI. The i.i.d. control draws every pair from
N(0, [[2, 0.4], [0.4, 2]]). Critic: concat MLP (x, y) -> 5 x 10 ReLU -> 1;
Adam 1e-4, batch 128, 20,000 steps; the curves are the training-batch
estimates, Gaussian-smoothed (sigma = 100 steps) as in the paper's Fig. 4c.

  .venv/bin/python experiments/tschannen/noniid.py  # 20 seeds, 20k steps
  .venv/bin/python experiments/tschannen/noniid.py --quick
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from experiments.tschannen import common  # pylint: disable=g-import-not-at-top
# pylint: disable-next=g-import-not-at-top
from mi_jax import bounds, critics, training

SIGMA_Z = np.array([[1.0, -0.5], [-0.5, 1.0]])
SIGMA_EPS = np.array([[1.0, 0.9], [0.9, 1.0]])
BOUNDS = ("infonce", "nwj")
LABELS = {"infonce": "I_NCE", "nwj": "I_NWJ"}


def true_mi() -> float:
  """I(X; Y) of a pair ~ N(0, SIGMA_Z + SIGMA_EPS): -1/2 log(1 - rho^2)."""
  s = SIGMA_Z + SIGMA_EPS
  rho_sq = s[0, 1] * s[1, 0] / (s[0, 0] * s[1, 1])
  return float(-0.5 * np.log(1.0 - rho_sq))


def sample_xy(key, batch_size: int, iid: bool):
  """Returns (x_Bx1, y_Bx1): shared-z (non-i.i.d.) or i.i.d. pairs."""
  kz, ke = jax.random.split(key)
  chol_eps = jnp.asarray(np.linalg.cholesky(SIGMA_EPS), jnp.float32)
  if iid:
    chol = jnp.asarray(np.linalg.cholesky(SIGMA_Z + SIGMA_EPS), jnp.float32)
    xy_Bx2 = jax.random.normal(ke, (batch_size, 2)) @ chol.T
  else:
    chol_z = jnp.asarray(np.linalg.cholesky(SIGMA_Z), jnp.float32)
    z_1x2 = jax.random.normal(kz, (1, 2)) @ chol_z.T
    xy_Bx2 = z_1x2 + jax.random.normal(ke, (batch_size, 2)) @ chol_eps.T
  return xy_Bx2[:, :1], xy_Bx2[:, 1:]


def make_loss(bound: str, iid: bool, batch_size: int):
  """loss_fn(critic, batch, key): the batch is drawn from `key` (synthetic)."""
  bound_fn = bounds.get(bound)

  def loss_fn(critic, batch, key):
    del batch
    x_Bx1, y_Bx1 = sample_xy(key, batch_size, iid)
    mi = bound_fn(critic(x_Bx1, y_Bx1))
    return -mi, {"mi": mi}

  return loss_fn


def make_critic(key):
  return critics.make("concat", 1, 1, hidden=(10,) * 5, rngs=nnx.Rngs(key))


def run_config(bound: str, iid: bool, settings: common.Settings,
               seed_ids) -> np.ndarray:
  """Trains the seeds as one vmapped program; returns estimates [steps, S]."""
  tx = optax.adam(settings.lr)
  keys_S = common.seed_keys(seed_ids)
  graphdef, states_S = training.init_train_states(
      make_critic, tx, jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys_S))
  step = training.make_train_step(
      graphdef, tx, make_loss(bound, iid, settings.batch_size))
  # The loss draws its batch from the step key; lax.scan over eval_every
  # steps, vmapped over seeds (metrics [S, T]).
  multi = jax.jit(training.vmap_over_seeds(
      training.make_multi_step(step, settings.eval_every, batch_axis=None),
      batch_axis=None, key_axis=0), donate_argnums=0)
  train_keys_S = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys_S)

  def chunk(states_S, c):
    states_S, metrics = multi(
        states_S, {}, jax.vmap(lambda k: jax.random.fold_in(k, c))(train_keys_S))
    return states_S, (metrics["mi"].T, metrics["finite"].T)

  mis, finite = [], []
  timing = {"name": f"{bound}, iid={iid}", "seeds": len(seed_ids),
            "chunk_steps": settings.eval_every, "train": [], "eval": []}
  for c in range(settings.steps // settings.eval_every):
    tw, tc = time.time(), time.process_time()
    states_S, (mi, fin) = chunk(states_S, c)
    jax.block_until_ready(mi)
    timing["train"].append((time.time() - tw, time.process_time() - tc))
    mis.append(np.asarray(mi))
    finite.append(np.asarray(fin))
  common.TIMINGS.append(timing)
  return np.concatenate(mis), np.concatenate(finite)


def smooth(x_T, sigma=100):
  """Gaussian smoothing along time (the paper's gaussian_filter1d(., 100))."""
  # pylint: disable-next=g-import-not-at-top
  from scipy.ndimage import gaussian_filter1d
  return gaussian_filter1d(x_T, sigma, axis=0, mode="nearest")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_args(parser, quick_steps=2000, quick_seeds=2,
                  quick_eval_every=1000)
  settings = common.settings_from_args(parser.parse_args(argv))
  seed_ids = list(range(settings.seeds))
  mi_true = true_mi()
  t0 = time.time()
  results, rows = {}, []
  tail = max(1, min(1000, settings.steps // 4))
  for bound in BOUNDS:
    for iid in (False, True):
      name = f"{LABELS[bound]}, {'i.i.d.' if iid else 'non-i.i.d.'}"
      mi_TxS, fin_TxS = run_config(bound, iid, settings, seed_ids)
      results[name] = (mi_TxS, fin_TxS)
      for i, seed in enumerate(seed_ids):
        final = float(np.mean(mi_TxS[-tail:, i]))
        rows.append({"experiment": "noniid", "config": name, "seed": seed,
                     "steps": settings.steps,
                     "estimate_last": final, "true_mi": mi_true,
                     "exceeds_true_mi": bool(final > mi_true),
                     "nonfinite_steps": int((~fin_TxS[:, i]).sum())})
      print(f"  [{name}] mean of last {tail} steps: "
            f"{np.nanmean(mi_TxS[-tail:]):+.4f} ({time.time() - t0:.0f}s)",
            flush=True)
  wall = time.time() - t0

  tag = common.run_size(settings)  # synthetic data; no variant differences
  common.write_csv(rows, os.path.join(settings.out_dir, f"noniid_{tag}.csv"))
  lines = [f"### §4 non-i.i.d. negatives ({settings.steps} steps, "
           f"{settings.seeds} seeds, {tag}); true MI = {mi_true:.4f} nats",
           "", f"| config | estimate (mean of last {tail} steps) | "
           "seeds above true MI | failed seeds |", "|---|---|---|---|"]
  for name in results:
    rs = [r for r in rows if r["config"] == name]
    mu, sd, _ = common.mean_std([r["estimate_last"] for r in rs])
    above = sum(r["exceeds_true_mi"] for r in rs)
    bad = [r["seed"] for r in rs
           if r["nonfinite_steps"] or not np.isfinite(r["estimate_last"])]
    lines.append(f"| {name} | {mu:+.4f} ± {sd:.4f} | {above}/{len(rs)} | "
                 f"{', '.join(map(str, bad)) or 'none'} |")
  lines.append(f"\nWall time: {wall:.0f} s\n")
  lines.append(common.timing_lines(common.TIMINGS[-len(results):]))
  table = "\n".join(lines)
  print(table)
  with open(os.path.join(settings.out_dir, f"noniid_{tag}.md"), "w") as f:
    f.write(table + "\n")

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  ax.axhline(mi_true, ls="--", color="k", label="true MI")
  for name, (mi_TxS, _) in results.items():
    s_TxS = smooth(np.nan_to_num(mi_TxS, nan=0.0))
    mu, sd = s_TxS.mean(1), s_TxS.std(1)
    x = np.arange(len(mu))
    ax.plot(x, mu, label=name, lw=1.5)
    ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
  ax.set_ylim(-0.3, 0.25)
  ax.set_xlabel("training step")
  ax.set_ylabel("I_EST (nats)")
  ax.set_title(f"§4 non-i.i.d. negatives ({settings.seeds} seeds, {tag})",
               fontsize=9)
  ax.legend(fontsize=7, loc="lower right")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path = os.path.join(settings.fig_dir, "tschannen_noniid.png")
  os.makedirs(settings.fig_dir, exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)
  print(f"wrote {path}")
  return rows


if __name__ == "__main__":
  main()
