#!/usr/bin/env bash
# Train a protocol's runs on a GPU machine, JOBS at a time (at these model sizes a step is launch-bound, about
# 30 ms on an H200 whatever the width, so concurrent runs share one GPU well): `wam bench --train-only` with
# protocol.sh's settings, so the runs land where, and are trained as, the bench evaluates them. Bring OUT back and
# run `bash benchmarks/protocol.sh` with the same settings: it finds the runs finished and evaluates, screens and
# times them.
#
#   usage: [PROTOCOL=10-demos] [BENCH_GROUPS="hard very-hard"] [BENCH_SEEDS="0 1 2"] [BENCH_HEADLINE="flare vla uwm"]
#          [BENCH_PRESETS="vla flare ..."] [OUT=outputs/bench-<protocol>] [JOBS=8] [DEVICE=cuda]
#          bash benchmarks/gpu_protocol_train.sh
#   As in protocol.sh, the BENCH_HEADLINE entries train at every seed of BENCH_SEEDS and the others at the first
#   (set it empty to train every preset at every seed).
#
# The bench collects each group's demonstrations under OUT first where they are missing (MetaWorld runs on the
# GPU machine's CPUs); each run's log is OUT/<group>/<preset>/seed-S/train.log.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOCOL=${PROTOCOL:-10-demos}
BENCH_GROUPS=${BENCH_GROUPS:-hard very-hard}  # (bash reserves GROUPS)
BENCH_SEEDS=${BENCH_SEEDS:-0 1 2}
BENCH_HEADLINE=${BENCH_HEADLINE-flare vla uwm}
BENCH_PRESETS=${BENCH_PRESETS:-vla flare fast-wam vpp uva aim uwm gr-1 dreamzero vjepa2-ac lda-1b pointworld alam gigaworld-policy unipi world-model-mpc}
OUT=${OUT:-outputs/bench-$PROTOCOL}
JOBS=${JOBS:-8}
DEVICE=${DEVICE:-cuda}

# shellcheck disable=SC2086  # groups, seeds, presets and headline entries are word lists
wam bench --protocol "$PROTOCOL" --groups $BENCH_GROUPS --seeds $BENCH_SEEDS --presets $BENCH_PRESETS \
  ${BENCH_HEADLINE:+--headline $BENCH_HEADLINE} --out "$OUT" --device "$DEVICE" --threads 1 \
  --train-only --train-jobs "$JOBS"
