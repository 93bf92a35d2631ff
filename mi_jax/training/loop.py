"""The generic trainer: `train(config, workdir)` and `evaluate(workdir)`.

`train` builds the run (`run.build_run`: the method named by `config.method`
plus the compiled steps), restores the latest checkpoint of `workdir` if any
(train state + data-iterator position), and loops: steps fed by the run's
input (`run.make_feed`: the data set on the device and up to
`config.steps_per_call` steps per compiled call, or prefetched batches one
step per call; a call always ends where something is due); at boundaries the
train metrics every `log_every` steps, the held-out bound every
`eval_every`, the quick part of the method's evaluations every
`probe_every`, a checkpoint every `checkpoint_every`. SIGTERM / SIGINT save a
checkpoint and return; a non-finite loss stops with a clear message and keeps
the last good checkpoint. At the end: the final evaluation
(`evaluate.final_evaluation`), `summary.json`, `curves.png` and the method's
results table.

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
from mi_jax.training.evaluate import (
    final_evaluation, format_results, heldout_bound, run_evaluations)
from mi_jax.training.run import (DEFAULT_STEPS_PER_CALL, Run, build_run,
                                 make_feed)

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


def _with_absolute_method_path(config):
  """A method given as a relative `.py` path is stored absolute (eval from anywhere)."""
  name = config.get("method")
  if isinstance(name, str) and name.endswith(".py") and not os.path.isabs(name):
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.method = os.path.abspath(name)
  return config


def _restore(ckpt, run: Run):
  """(state, step, iterator state) of the latest checkpoint, or the initial ones."""
  start, restored, it_state = ckpt.restore_latest(
      checkpoint_lib.abstract_like(run.state))
  if start is None:
    return run.state, 0, None
  _log(f"resumed from {ckpt.directory} at step {start}")
  return restored, start, it_state


def _steps_to_boundary(config, step: int, stop_after_step) -> int:
  """Steps from `step` to the next step where something is due (or the end)."""
  ends = [config.steps - step]
  if stop_after_step is not None and stop_after_step > step:
    ends.append(stop_after_step - step)
  for every in (config.log_every, config.eval_every, config.probe_every,
                config.checkpoint_every):
    ends.append(every - step % every)
  return min(ends)


def _due(config, step: int, *, stopping: bool) -> set:
  """What happens after `step`: a subset of {log, eval, probe, save}."""
  last = step == config.steps
  due = set()
  if step % config.log_every == 0 or last:
    due.add("log")
  if step % config.eval_every == 0 or last:
    due.add("eval")
  if step % config.probe_every == 0:
    due.add("probe")
  if step % config.checkpoint_every == 0 or last or stopping:
    due.add("save")
  return due


class _FiniteGuard:
  """Collects the steps' device-side `finite` flags; reads them at boundaries only."""

  def __init__(self, config, last_good: int | None):
    self.config, self.last_good, self._flags = config, last_good, []

  def add(self, first_step: int, finite) -> None:
    """`finite`: the flag of step `first_step`, or flags of consecutive steps."""
    self._flags.append((first_step, finite))

  def check(self) -> None:
    flags = jax.device_get([f for _, f in self._flags])
    bad = [t + i for (t, _), ok in zip(self._flags, flags)
           for i, good in enumerate(np.ravel(ok)) if not good]
    self._flags.clear()
    if bad:
      raise NonFiniteLossError(
          _non_finite_message(bad[0], self.config, self.last_good))


class _Progress:
  """Progress bar, log lines and the training rate (evaluation time excluded)."""

  def __init__(self, config, bound_key: str, start: int, *, enabled: bool):
    self.bar = None
    if config.progress_bar and enabled and start < config.steps:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self.bar = tqdm(total=config.steps, initial=start, unit="step",
                      dynamic_ncols=True, smoothing=0.1)
    self.shown = {f"train/{bound_key}": "train", f"eval/{bound_key}": "heldout",
                  "probe/linear_acc": "probe"}
    self.rate_step, self.rate_t, self._paused_at = start, time.time(), None

  def tick(self, num_steps: int = 1) -> None:
    if self.bar is not None:
      self.bar.update(num_steps)

  def pause(self) -> None:
    self._paused_at = time.time()

  def resume(self) -> None:
    self.rate_t += time.time() - self._paused_at

  def train_row(self, step: int, metrics: dict) -> dict:
    """The step's scalar train metrics and the steps/s since the last row."""
    row = metrics_lib.to_scalars(metrics, "train/")
    row.pop("train/finite", None)
    row["train/steps_per_s"] = (step - self.rate_step) / max(
        self._paused_at - self.rate_t, 1e-9)
    self.rate_step, self.rate_t = step, self._paused_at
    return row

  def write(self, writer, step: int, row: dict) -> None:
    if not row:
      return
    writer.write(step, row)
    if self.bar is not None:
      self.bar.set_postfix({self.shown[k]: f"{v:.3f}" for k, v in row.items()
                            if k in self.shown})
    shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(row.items())
                      if k != "train/steps_per_s")
    _log(f"step {step}: {shown}")

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def _write_outputs(workdir: str, run: Run, summary: dict, results: dict) -> None:
  """curves.png, summary.json and the closing table (process 0)."""
  rows = metrics_lib.read_jsonl(os.path.join(workdir, metrics_lib.METRICS_FILENAME))
  metrics_lib.plot_curves(
      rows, os.path.join(workdir, metrics_lib.CURVES_FILENAME),
      title=run.method.title)
  with open(os.path.join(workdir, SUMMARY_FILENAME), "w") as f:
    json.dump(summary, f, indent=2)
  _log(format_results(run, results))


def train(config: ml_collections.ConfigDict, workdir: str, *,
          stop_after_step: int | None = None,
          final_eval: bool = True) -> dict:
  """Trains (or resumes) the run of `config` in `workdir`; returns a summary dict.

  Args:
    config: a ConfigDict like `experiments/configs/multiview_mnist.py`;
      `config.method` names the method module (`mi_jax.training.run`).
    workdir: the run's folder; holds `config.json`, `checkpoints/`,
      `metrics.jsonl`, `tensorboard/`, `summary.json`, `curves.png`. If it
      holds checkpoints, training resumes from the latest one.
    stop_after_step: stop (with a checkpoint, as on SIGTERM) once this step is
      reached; for tests of resumption.
    final_eval: run the final evaluation (held-out bound, the method's
      evaluations and baselines), write `summary.json` and `curves.png` when
      the run completes.

  Returns:
    `{"step", "interrupted", "wall_s", "steps_per_s", "workdir", "state",
    ...final evaluation metrics when the run completed}`.

  Raises:
    NonFiniteLossError: the loss became NaN/inf (message names the step).
    ValueError: bad config values, batch not divisible across devices,
      unknown method / encoder / critic / bound / view names.
    FileNotFoundError: the data set is not prepared (from the data layer).
  """
  workdir, is_main = os.path.abspath(workdir), jax.process_index() == 0
  config = _with_absolute_method_path(config)
  run = build_run(config)  # Bad configs fail here, before touching workdir.
  if is_main:
    _warn_config_changes(config, workdir)
    config_lib.save_config(config, workdir)
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
      async_save=False)
  state, start, it_state = _restore(ckpt, run)
  feed = make_feed(run, it_state)
  # The device feed runs up to `steps_per_call` steps per compiled call,
  # ending every call where something is due; the others one step per call.
  per_call = (config.get("steps_per_call", DEFAULT_STEPS_PER_CALL)
              if feed.stacked else 1)
  writer = metrics_lib.MetricsWriter(workdir, resume_step=start, enabled=is_main)
  progress = _Progress(config, run.method.bound_key, start, enabled=is_main)
  guard = _FiniteGuard(config, last_good=start or None)
  base_key = jax.random.key(config.seed)
  step, interrupted, t0 = start, None, time.time()
  try:
    with _StopSignal() as stop:
      while step < config.steps and interrupted is None:
        n = min(per_call, _steps_to_boundary(config, step, stop_after_step))
        state, m, finite = feed.run(state, n, base_key)
        guard.add(step + 1, finite)
        step += n
        progress.tick(n)
        if stop.poll(step, config.log_every):
          interrupted = stop.received
        elif step == stop_after_step:
          interrupted = "stop_after_step"
        due = _due(config, step, stopping=interrupted is not None)
        if not due:
          continue
        guard.check()  # Raises NonFiniteLossError; syncs with the device.
        progress.pause()
        if "log" in due and feed.stacked:
          m = jax.tree.map(lambda x: x[-1], m)  # The chunk's last step.
        row = progress.train_row(step, m) if "log" in due else {}
        if "eval" in due:
          row.update({f"eval/{k}": v for k, v in heldout_bound(run, state).items()})
        if "probe" in due:
          row.update(run_evaluations(run, state, full=False))
        progress.write(writer, step, row)
        if "save" in due:
          ckpt.save(step, state, feed.state())
          guard.last_good = step
          _log(f"step {step}: saved checkpoint")
        progress.resume()  # Evaluation time is not training time.
  finally:
    feed.close()
    progress.close()
    ckpt.close()
    writer.close()
  if interrupted not in (None, "stop_after_step"):
    _log(f"received {interrupted}: saved checkpoint at step {step}; run "
         "the same command again to resume")

  wall_s = time.time() - t0
  summary = {"step": step, "interrupted": interrupted, "wall_s": wall_s,
             "steps_per_s": (step - start) / max(wall_s, 1e-9),
             "workdir": workdir}
  if interrupted is None and final_eval:
    results = final_evaluation(run, state)
    summary.update(results)
    if is_main:
      _write_outputs(workdir, run, summary, results)
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
  _log(format_results(run, results))
  return results
