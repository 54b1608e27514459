#!/usr/bin/env bash
# Foundation benchmark: the vla baseline and fast-wam, vision track, 50 scripted demonstrations per task on
# button-press-topdown-v3 and drawer-open-v3, each evaluated closed-loop on 50 held-out seeds per task.
# Writes results/foundation/<preset>/{eval_info.json,train_summary.json}, and for fast-wam also the evaluation
# with the future predicted before acting (eval_info_future_predict.json). Takes about 35 minutes on 2 CPU cores.
#   usage: bash benchmarks/foundation.sh            (after `bash scripts/setup.sh`)
#   knobs: OUT=outputs/foundation STEPS=5000 PRESETS="vla fast-wam"
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-outputs/foundation}
STEPS=${STEPS:-5000}
PRESETS=${PRESETS:-vla fast-wam}
TASKS=button-press-topdown-v3,drawer-open-v3

wam collect --tasks "$TASKS" --episodes 50 --out "$OUT/data" --track vision --workers 2
for preset in $PRESETS; do
  wam train --preset "$preset" --data "$OUT/data" --out "$OUT/$preset" --steps "$STEPS"
  wam eval --run "$OUT/$preset" --tasks "$TASKS" --episodes 50 --out "$OUT/$preset/eval" --video 2
  mkdir -p "results/foundation/$preset"
  cp "$OUT/$preset/eval/eval_info.json" "$OUT/$preset/train_summary.json" "results/foundation/$preset/"
done
# Fast-WAM's claim, on the same weights: act with the future branch skipped (above) versus imagine-then-act.
if [[ " $PRESETS " == *" fast-wam "* ]]; then
  wam eval --run "$OUT/fast-wam" --tasks "$TASKS" --episodes 50 --out "$OUT/fast-wam/eval-predict" --future predict
  cp "$OUT/fast-wam/eval-predict/eval_info.json" "results/foundation/fast-wam/eval_info_future_predict.json"
fi
