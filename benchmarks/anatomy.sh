#!/usr/bin/env bash
# Anatomy benchmark: every backbone family under every coupling it supports, trained on 50 scripted
# drawer-open-v3 demonstrations (vision track) and evaluated closed-loop on held-out seeds, plus the vla
# baseline, with offline screens on 10 held-out demonstrations; joint and post-head models are evaluated twice,
# with the future skipped (their default) and predicted first, and rollout models also with their prior policy
# alone. Two runs at a time, one thread each. Writes results/anatomy/<row>/{train_summary,eval_info,
# offline_info,eval_info_future_predict,eval_info_prior_only}.json;
# `python benchmarks/anatomy_table.py` prints the table. About 110 minutes on 2 CPU cores at the defaults.
#   usage: bash benchmarks/anatomy.sh            (after `bash scripts/setup.sh`)
#   knobs: OUT=outputs/anatomy STEPS=2000 EPISODES=20 ROWS="diffusion-joint ..." (a subset of the row names)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export OUT=${OUT:-outputs/anatomy} RESULTS=${RESULTS:-results/anatomy} STEPS=${STEPS:-2000} EPISODES=${EPISODES:-20} TASK=drawer-open-v3
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# name | substrate | backbone | coupling | extra train arguments
ALL_ROWS="
vla|none|diffusion|none|
diffusion-joint|pixel-latent|diffusion|joint|
diffusion-post-head|feature-teacher|diffusion|post-head|
diffusion-rollout|feature-teacher|diffusion|rollout|
autoregressive-joint|pixel-latent|autoregressive|joint|
autoregressive-post-head|feature-teacher|autoregressive|post-head|
autoregressive-rollout|feature-teacher|autoregressive|rollout|
hybrid-joint|pixel-latent|hybrid|joint|--parameterization flow
hybrid-post-head|feature-teacher|hybrid|post-head|--parameterization flow
hybrid-rollout|feature-teacher|hybrid|rollout|--parameterization flow
jepa-joint|feature-teacher|jepa|joint|
jepa-post-head|feature-teacher|jepa|post-head|
jepa-rollout|feature-teacher|jepa|rollout|
vlm-joint|feature-token|vlm|joint|
vlm-post-head|feature-teacher|vlm|post-head|
vlm-rollout|feature-teacher|vlm|rollout|
"

run_row() {
  IFS='|' read -r name substrate backbone coupling extra <<< "$1"
  local run="$OUT/$name" dest="$RESULTS/$name"
  if [[ -f "$dest/eval_info.json" ]]; then echo "$name: done already"; return; fi  # resumable
  # shellcheck disable=SC2086
  wam train --preset fast-wam --data "$OUT/data" --out "$run" --steps "$STEPS" --substrate "$substrate" \
    --backbone "$backbone" --coupling "$coupling" $extra > "$run.train.log" 2>&1
  wam eval --run "$run" --tasks "$TASK" --episodes "$EPISODES" --max-steps 300 --out "$run/eval" \
    > "$run.eval.log" 2>&1
  wam eval --run "$run" --tasks "$TASK" --episodes 10 --offline --data "$OUT/heldout" --out "$run/offline" \
    > "$run.offline.log" 2>&1
  mkdir -p "$dest"
  cp "$run/train_summary.json" "$run/eval/eval_info.json" "$run/offline/offline_info.json" "$dest/"
  if [[ "$coupling" == joint || "$coupling" == post-head ]]; then  # the same weights, imagining the future first
    wam eval --run "$run" --tasks "$TASK" --episodes "$EPISODES" --max-steps 300 --future predict \
      --out "$run/eval-predict" > "$run.eval-predict.log" 2>&1
    cp "$run/eval-predict/eval_info.json" "$dest/eval_info_future_predict.json"
  fi
  if [[ "$coupling" == rollout ]]; then  # the same weights acting with the prior alone: what the search adds
    wam eval --run "$run" --tasks "$TASK" --episodes "$EPISODES" --max-steps 300 --planner.planner best-of-n \
      --planner.candidates 1 --out "$run/eval-prior" > "$run.eval-prior.log" 2>&1
    cp "$run/eval-prior/eval_info.json" "$dest/eval_info_prior_only.json"
  fi
  echo "$name: $(python -c "import json;print(json.load(open('$dest/eval_info.json'))['aggregated']['pc_success'])")% success"
}
export -f run_row

mkdir -p "$OUT"
wam collect --tasks "$TASK" --episodes 50 --out "$OUT/data" --track vision --workers 2
# Held-out demonstrations for the offline screens (seeds far from the training ones; see wam.data.collect).
wam collect --tasks "$TASK" --episodes 10 --out "$OUT/heldout" --track vision --workers 2 --seed 50000000
rows=$(echo "$ALL_ROWS" | grep -v '^$')
if [[ -n "${ROWS:-}" ]]; then rows=$(echo "$rows" | grep -E "^($(echo "$ROWS" | tr ' ' '|'))\|"); fi
echo "$rows" | xargs -P 2 -I{} bash -c 'run_row "$@"' _ {}
