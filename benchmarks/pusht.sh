#!/usr/bin/env bash
# PushT benchmark: 200 scripted demonstrations (vision track: 96x96 image + pusher xy), then for each preset
# training and 50 closed-loop episodes on held-out seeds, with the full accuracy-at-budget block.
# Presets: the vla baseline, fast-wam, flare, and vjepa2-ac (CEM planning through its world model toward a goal
# embedding). Writes results/pusht/<preset>/{eval_info.json,train_summary.json}. A re-run skips finished stages.
#   usage: bash benchmarks/pusht.sh              (after `bash scripts/setup.sh`)
#   knobs: OUT=outputs/pusht STEPS=5000 EPISODES=50 PRESETS="vla fast-wam flare vjepa2-ac"
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-outputs/pusht}
STEPS=${STEPS:-5000}
EPISODES=${EPISODES:-50}
PRESETS=${PRESETS:-vla fast-wam flare vjepa2-ac}

python benchmarks/pusht_expert.py --out results/pusht
wam collect --suite pusht --tasks pusht --episodes 200 --out "$OUT/data" --workers 2
for preset in $PRESETS; do
  if [ ! -f "$OUT/$preset/train_summary.json" ]; then
    wam train --preset "$preset" --data "$OUT/data" --out "$OUT/$preset" --steps "$STEPS" --save-every 500 \
      --keep-checkpoints 1 --resume
  fi
  if [ ! -f "$OUT/$preset/eval/eval_info.json" ]; then
    wam eval --run "$OUT/$preset" --tasks pusht --episodes "$EPISODES" --out "$OUT/$preset/eval" --video 2
  fi
  mkdir -p "results/pusht/$preset"
  cp "$OUT/$preset/eval/eval_info.json" "$OUT/$preset/train_summary.json" "results/pusht/$preset/"
done
