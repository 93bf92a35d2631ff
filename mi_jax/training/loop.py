"""The generic trainer: `train(config, workdir)` and `evaluate(workdir)`.

`train` builds the run from a config (`experiment.build_run`: data, model,
loss, a jitted train step sharded over a mesh of all devices when there is
more than one), restores the latest checkpoint of `workdir` if any (train
state + data-iterator position), and loops: progress bar, metrics every `log_every` steps, the bound on the
held-out test split every `eval_every`, the linear-probe accuracy every
`probe_every`, a checkpoint every `checkpoint_every`. SIGTERM / SIGINT save a
checkpoint and return; a non-finite loss stops with a clear message and keeps
the last good checkpoint. At the end: final evaluation (linear probe of the
learned features beside the raw-pixel baseline, kNN, held-out bound; MLP
probe and random-model baseline when the config asks for them),
`summary.json` and `curves.png`.

The step key of step t (1-based) is `fold_in(key(seed), t)`, so a resumed run
replays exactly the steps an uninterrupted one would (bitwise on CPU).
"""

import json
import os
import signal
import time

import jax
import ml_collections
import numpy as np

from mi_jax.training import checkpoint as checkpoint_lib
from mi_jax.training import config as config_lib
from mi_jax.training import metrics as metrics_lib
from mi_jax.training.experiment import (  # pylint: disable=unused-import
    Objective, Run, build_run, final_evaluation, format_results, global_batch,
    heldout_bound, make_iterator, probe, random_state, register_objective,
    run_title)

SUMMARY_FILENAME = "summary.json"


class NonFiniteLossError(RuntimeError):
  """The loss or gradients became NaN/inf; the run stopped."""


def _log(msg: str) -> None:
  """Prints a line from process 0 (above the progress bar when one is shown)."""
  if jax.process_index() != 0:
    return
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    tqdm.write(msg)
  except ImportError:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# The loop.


class _StopSignal:
  """Records SIGTERM / SIGINT so the loop can save and return between steps."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: signals stay as they are.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def poll(self, step: int, every: int) -> bool:
    """Whether to stop after `step`; agreed by all hosts every `every` steps.

    One host alone may receive the signal, and saving is collective, so on
    several hosts the flags are all-gathered at steps that are multiples of
    `every` (one process: checked every step).
    """
    if jax.process_count() == 1:
      return self.received is not None
    if step % every:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(
        np.asarray(self.received is not None))
    if np.any(flags) and self.received is None:
      self.received = "SIGTERM (on another host)"
    return bool(np.any(flags))

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


def _non_finite_message(step: int, config, last_good: int | None) -> str:
  kept = (f"the last good checkpoint (step {last_good}) is kept"
          if last_good is not None else "no checkpoint was saved")
  return (
      f"Non-finite loss or gradients at step {step}: training stopped, {kept} "
      "and the bad state was not saved. Try a lower learning rate "
      f"(--config.lr={config.lr / 10:g}), float32 compute "
      "(--config.compute_dtype=float32) if bfloat16 was on, or gradient "
      "clipping (--config.grad_clip=1.0).")


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = list(v) if isinstance(v, tuple) else v
  return out


def _warn_config_changes(config, workdir: str) -> None:
  """Logs the fields that differ from the workdir's saved config, if any."""
  if not os.path.isfile(os.path.join(workdir, config_lib.CONFIG_FILENAME)):
    return
  old = _flatten(config_lib.load_saved_config(workdir).to_dict())
  new = _flatten(json.loads(config.to_json()))
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if changed:
    _log(f"note: config differs from {workdir}/config.json in: "
         f"{', '.join(f'{k} ({old.get(k)!r} -> {new.get(k)!r})' for k in changed)}")


def train(config: ml_collections.ConfigDict, workdir: str, *,
          stop_after_step: int | None = None,
          final_eval: bool = True) -> dict:
  """Trains (or resumes) the run of `config` in `workdir`; returns a summary dict.

  Args:
    config: a ConfigDict like `experiments/configs/multiview_mnist.py`.
    workdir: the run's folder; holds `config.json`, `checkpoints/`,
      `metrics.jsonl`, `tensorboard/`, `summary.json`, `curves.png`. If it
      holds checkpoints, training resumes from the latest one.
    stop_after_step: stop (with a checkpoint, as on SIGTERM) once this step is
      reached; for tests of resumption.
    final_eval: run the final evaluation (probes, kNN, held-out bound), write
      `summary.json` and `curves.png` when the run completes.

  Returns:
    `{"step", "interrupted", "wall_s", "steps_per_s", "params_hash", ...final
    evaluation metrics when the run completed}`.

  Raises:
    NonFiniteLossError: the loss became NaN/inf (message names the step).
    ValueError: bad config values, batch not divisible across devices,
      unknown encoder/critic/bound/view names (from the registries).
    FileNotFoundError: the data set is not prepared (from the data layer).
  """
  workdir = os.path.abspath(workdir)
  is_main = jax.process_index() == 0
  run = build_run(config)  # Bad configs fail here, before touching workdir.
  if is_main:
    _warn_config_changes(config, workdir)
    config_lib.save_config(config, workdir)
  iterator = make_iterator(run)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
      async_save=False)
  start, restored, it_state = ckpt.restore_latest(
      checkpoint_lib.abstract_like(run.state))
  state = run.state
  if start is not None:
    state = restored
    iterator.set_state(it_state)
    _log(f"resumed from {ckpt.directory} at step {start}")
  start = start or 0
  last_good = start if start > 0 else None

  writer = metrics_lib.MetricsWriter(
      workdir, resume_step=start, enabled=is_main)
  base_key = jax.random.key(config.seed)
  bar = None
  if config.progress_bar and is_main and start < config.steps:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=config.steps, initial=start, unit="step",
               dynamic_ncols=True, smoothing=0.1)

  def save(step):
    ckpt.save(step, state, iterator.get_state())
    _log(f"step {step}: saved checkpoint")

  interrupted = None
  step = start
  t0 = time.time()
  finite_since_check = []  # (step, device bool) per step, read at boundaries.
  rate_step, rate_t = start, t0
  try:
    with _StopSignal() as stop:
      while step < config.steps:
        step += 1
        batch = global_batch(run, next(iterator))
        state, m = run.train_step(state, batch, base_key)
        finite_since_check.append((step, m["finite"]))
        if bar is not None:
          bar.update(1)
        stop_now = stop.poll(step, config.log_every)
        boundary = (step % config.log_every == 0 or step % config.eval_every == 0
                    or step % config.probe_every == 0
                    or step % config.checkpoint_every == 0
                    or step == config.steps or stop_now
                    or step == stop_after_step)
        if not boundary:
          continue
        flags = jax.device_get([f for _, f in finite_since_check])
        bad = [t for (t, _), ok in zip(finite_since_check, flags) if not ok]
        finite_since_check.clear()
        if bad:
          raise NonFiniteLossError(_non_finite_message(bad[0], config, last_good))
        t_boundary = time.time()  # Steps so far are done (synced above).
        row = {}
        if step % config.log_every == 0 or step == config.steps:
          row.update(metrics_lib.to_scalars(m, "train/"))
          # Training throughput since the last log row, evaluation excluded.
          row["train/steps_per_s"] = (step - rate_step) / max(
              t_boundary - rate_t, 1e-9)
          rate_step, rate_t = step, t_boundary
        if step % config.eval_every == 0 or step == config.steps:
          row.update({f"eval/{k}": v for k, v in heldout_bound(run, state).items()})
        if step % config.probe_every == 0:
          row.update({f"probe/{k}": v for k, v in probe(run, state).items()})
        if row:
          row.pop("train/finite", None)
          writer.write(step, row)
          if bar is not None:
            shown_keys = {f"train/{run.bound_key}": "train",
                          f"eval/{run.bound_key}": "heldout",
                          "probe/linear_acc": "probe"}
            bar.set_postfix({shown_keys[k]: f"{v:.3f}" for k, v in row.items()
                             if k in shown_keys})
          shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(row.items())
                            if k != "train/steps_per_s")
          _log(f"step {step}: {shown}")
        if (step % config.checkpoint_every == 0 or step == config.steps
            or stop_now or step == stop_after_step):
          save(step)
          last_good = step
        rate_t += time.time() - t_boundary  # Evaluation time is not training.
        if stop_now:
          interrupted = stop.received
          _log(f"received {interrupted}: saved checkpoint at step {step}; run "
               "the same command again to resume")
          break
        if step == stop_after_step:
          interrupted = "stop_after_step"
          break
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
    writer.close()

  wall_s = time.time() - t0
  summary = {"step": step, "interrupted": interrupted, "wall_s": wall_s,
             "steps_per_s": (step - start) / max(wall_s, 1e-9),
             "workdir": workdir}
  if interrupted is None and final_eval:
    results = final_evaluation(run, state)
    summary.update(results)
    if is_main:
      rows = metrics_lib.read_jsonl(os.path.join(workdir, metrics_lib.METRICS_FILENAME))
      metrics_lib.plot_curves(
          rows, os.path.join(workdir, metrics_lib.CURVES_FILENAME),
          title=run_title(config))
      with open(os.path.join(workdir, SUMMARY_FILENAME), "w") as f:
        json.dump(summary, f, indent=2)
      _log(format_results(results, config))
  summary["state"] = state
  return summary


def restore_state(workdir: str, run: Run | None = None):
  """(run, step, state) of the latest checkpoint in `workdir`."""
  workdir = os.path.abspath(workdir)
  if run is None:
    run = build_run(config_lib.load_saved_config(workdir))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    step, state, _ = ckpt.restore_latest(checkpoint_lib.abstract_like(run.state))
  finally:
    ckpt.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: train first "
                            f"(mi-jax train --workdir {workdir})")
  return run, step, state


def evaluate(workdir: str) -> dict:
  """Restores the latest checkpoint of `workdir` and runs the final evaluation."""
  run, step, state = restore_state(workdir)
  results = final_evaluation(run, state)
  results["step"] = step
  _log(f"{workdir}: step {step}")
  _log(format_results(results, run.config))
  return results
