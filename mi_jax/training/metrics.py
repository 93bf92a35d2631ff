"""Run metrics: JSONL + TensorBoard (tensorboardX, no TensorFlow) writers and the curves PNG.

Each logged row is `{"step": int, "<group>/<name>": float, ...}`, one JSON
object per line in `workdir/metrics.jsonl`; the same scalars go to TensorBoard
event files in `workdir/tensorboard`. `plot_curves` draws every logged scalar
against the step into `workdir/curves.png`.
"""

import json
import math
import os
from typing import Any, Mapping

import numpy as np

METRICS_FILENAME = "metrics.jsonl"
CURVES_FILENAME = "curves.png"


def to_scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """Converts a metrics dict of (device) scalars to plain floats, keys prefixed."""
  out = {}
  for key, value in metrics.items():
    array = np.asarray(value)
    if array.size != 1:
      continue
    out[prefix + key] = float(array.reshape(()))
  return out


def read_jsonl(path: str) -> list[dict]:
  """Reads the rows of a metrics JSONL file (missing file: no rows)."""
  if not os.path.isfile(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          continue  # A line cut short by a kill; the resume rewrites it.
  return rows


class MetricsWriter:
  """Appends scalar rows to `workdir/metrics.jsonl` and TensorBoard events.

  On resume from step `resume_step`, rows logged after that step (by the
  interrupted run, past its last checkpoint) are dropped, so the file holds
  each step once. Only process 0 writes (`enabled=False` elsewhere).
  """

  def __init__(self, workdir: str, *, resume_step: int | None = None,
               enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILENAME)
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    rows = read_jsonl(self.path)
    keep_upto = -1 if resume_step is None else resume_step
    kept = [r for r in rows if r.get("step", 0) <= keep_upto]
    with open(self.path, "w") as f:
      for row in kept:
        f.write(json.dumps(row) + "\n")
    self._file = open(self.path, "a")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(
          os.path.join(workdir, "tensorboard"), purge_step=resume_step)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Logs one row of scalars at `step`."""
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: float(v) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, float(value), int(step))
      self._tb.flush()

  def close(self) -> None:
    """Flushes and closes the files."""
    if not self.enabled:
      return
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def _panels(keys: list[str]) -> list[tuple[str, list[str]]]:
  """Groups `group/name` keys by `name`: train/mi and eval/mi share a panel."""
  panels: dict[str, list[str]] = {}
  for key in keys:
    panels.setdefault(key.split("/")[-1], []).append(key)
  return list(panels.items())


def plot_curves(rows: list[dict], png_path: str, *, title: str = "") -> str:
  """Draws the logged scalars against `step` into a PNG.

  One panel per metric name; the same name in several groups (e.g. the
  bound `mi` of `train/` and `eval/`, the held-out split) shares a panel.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  keys = sorted({k for r in rows for k in r if k != "step"})
  panels = _panels([k for k in keys if not k.endswith("finite")])
  cols = min(3, max(1, len(panels)))
  nrows = max(1, math.ceil(len(panels) / cols))
  fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.2 * nrows),
                           squeeze=False)
  for ax, (name, members) in zip(axes.flat, panels):
    for key in members:
      pts = [(r["step"], r[key]) for r in rows if key in r]
      steps, values = zip(*pts)
      ax.plot(steps, values, marker="o" if len(pts) < 30 else None,
              markersize=3, label=key)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)
  return png_path
