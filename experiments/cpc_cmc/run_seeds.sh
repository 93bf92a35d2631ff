#!/usr/bin/env bash
# Runs each CPC / CMC config for seeds 0..N-1 (nice'd, one after another) and
# writes the report (docs table rows + per-offset figure). Usage:
#   experiments/cpc_cmc/run_seeds.sh OUT_DIR [SEEDS=3] [extra --config.X=Y ...]
# Each run: mi-jax train --config experiments/configs/NAME.py --workdir OUT_DIR/NAME_sSEED --config.seed=SEED
set -u
out=${1:?usage: run_seeds.sh OUT_DIR [SEEDS] [overrides...]}
seeds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$out"
run() {  # name config [overrides...]
  local name=$1 config=$2; shift 2
  for ((s = 0; s < seeds; s++)); do
    nice -n 10 mi-jax train --config "experiments/configs/$config.py" \
      --workdir "$out/${name}_s$s" --config.seed=$s "$@" \
      > "$out/${name}_s$s.log" 2>&1 || echo "FAILED: $name seed $s" >> "$out/failed.txt"
  done
}
run cpc_fsdd cpc_fsdd "$@"
run cmc_fsdd cmc_fsdd "$@"
run cmc_mnist_core cmc_mnist_quadrants "$@"
run cmc_mnist_full cmc_mnist_quadrants --config.cmc.graph=full "$@"
run cpc_mnist cpc_mnist "$@"
python experiments/cpc_cmc/report.py "$out"
