#!/usr/bin/env bash
# Train a protocol's runs on a GPU machine, JOBS at a time (at these model sizes a step is launch-bound, about
# 30 ms on an H200 whatever the width, so concurrent runs share one GPU well), into the layout `wam bench
# --protocol` reads. Bring OUT back and run `bash benchmarks/protocol.sh` with the same settings: it finds the
# runs finished (`wam train --resume` leaves them as they are) and evaluates, screens and times them.
#
#   usage: [PROTOCOL=10-demos] [BENCH_GROUPS="hard very-hard"] [BENCH_SEEDS="0 1 2"] [BENCH_HEADLINE="flare"]
#          [BENCH_PRESETS="vla flare ..."] [OUT=outputs/bench-<protocol>] [JOBS=8] [DEVICE=cuda]
#          bash benchmarks/gpu_protocol_train.sh
#   As in protocol.sh, the BENCH_HEADLINE entries train at every seed of BENCH_SEEDS and the others at the first
#   (set it empty to train every preset at every seed).
#
# OUT/<group>/data must hold each group's demonstrations (collected where MetaWorld runs: `wam bench --protocol P
# --groups G --presets vla` collects them first; `wam collect --tasks metaworld/G --episodes 10 --out OUT/G/data`
# alone is enough). The options are the ones `wam bench` trains with, so that the bench accepts the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOCOL=${PROTOCOL:-10-demos}
BENCH_GROUPS=${BENCH_GROUPS:-hard very-hard}  # (bash reserves GROUPS)
BENCH_SEEDS=${BENCH_SEEDS:-0 1 2}
BENCH_HEADLINE=${BENCH_HEADLINE-flare}
BENCH_PRESETS=${BENCH_PRESETS:-vla flare fast-wam vpp uva aim uwm gr-1 dreamzero vjepa2-ac lda-1b pointworld alam gigaworld-policy unipi world-model-mpc}
OUT=${OUT:-outputs/bench-$PROTOCOL}
JOBS=${JOBS:-8}
DEVICE=${DEVICE:-cuda}
steps=$(python -c "from wam.eval.protocols import get_protocol; print(get_protocol('$PROTOCOL').steps)")
batch=$(python -c "from wam.eval.bench import BenchConfig; print(BenchConfig().batch_size)")
every=$(python -c "from wam.eval.bench import BenchConfig; print(BenchConfig().checkpoint_every)")

train_one() {  # group preset seed
  local run="$OUT/$1/$2/seed-$3/run"
  mkdir -p "$(dirname "$run")"
  if wam train --data "$OUT/$1/data" --out "$run" --preset "$2" --steps "$steps" --batch-size "$batch" \
      --save-every "$every" --keep-checkpoints 1 --seed "$3" --resume --device "$DEVICE" --threads 1 \
      > "$run.log" 2>&1; then
    echo "done $1 $2 seed $3"
  else
    echo "FAILED $1 $2 seed $3 (see $run.log)"
  fi
}

for group in $BENCH_GROUPS; do
  for preset in $BENCH_PRESETS; do
    seeds=$BENCH_SEEDS
    if [ -n "$BENCH_HEADLINE" ] && [[ " $BENCH_HEADLINE " != *" $preset "* ]]; then seeds=${BENCH_SEEDS%% *}; fi
    for seed in $seeds; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      train_one "$group" "$preset" "$seed" &
    done
  done
done
wait
