"""Runs every Tschannen et al. (ICLR 2020) reproduction, one after the other.

Order: §4 (synthetic, non-i.i.d. negatives), §3.2 critic capacity, §3.3
encoder architecture, §3.1c hard-to-invert encoders, §3.1a invertible
encoders, §3.1b adversarial encoder. Flags after the script name are passed
to every experiment (e.g. `--quick`, `--dataset mnist`, `--seeds 5`). Each
experiment prints its table and writes its CSV (experiments/tschannen/results/)
and its figure (docs/figures/tschannen_*.png); a summary of wall times ends
the run. An experiment that raises is reported as failed, and the rest run.

  .venv/bin/python experiments/tschannen/run_all.py --quick  # reduced
  .venv/bin/python experiments/tschannen/run_all.py           # paper setting
"""

import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# pylint: disable=g-import-not-at-top
from experiments.tschannen import adversarial
from experiments.tschannen import critic_capacity
from experiments.tschannen import encoder_arch
from experiments.tschannen import hard_to_invert
from experiments.tschannen import invertible
from experiments.tschannen import noniid

EXPERIMENTS = (
    ("§4 noniid", noniid.main),
    ("§3.2 critic_capacity", critic_capacity.main),
    ("§3.3 encoder_arch", encoder_arch.main),
    ("§3.1c hard_to_invert", hard_to_invert.main),
    ("§3.1a invertible", invertible.main),
    ("§3.1b adversarial", adversarial.main),
)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
  argv = [a for a in argv if not a.startswith("--only=")]
  times, t_all = [], time.time()
  for name, fn in EXPERIMENTS:
    if only and not any(o in name for o in only[0].split(",")):
      continue
    print(f"\n===== {name} {' '.join(argv)} =====", flush=True)
    t0 = time.time()
    status = "ok"
    try:
      fn(argv)
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      status = "FAILED"
    times.append((name, time.time() - t0, status))
  print("\n===== wall times =====")
  for name, secs, status in times:
    print(f"{name:24s} {secs:7.0f} s  {status}")
  print(f"{'total':24s} {time.time() - t_all:7.0f} s")
  return 1 if any(s != "ok" for _, _, s in times) else 0


if __name__ == "__main__":
  sys.exit(main())
