#!/usr/bin/env bash
# Deployment benchmark: "dream more or act more?" measured closed-loop, all on 2 CPU cores.
#
# 1. Adaptive chunking. fast-wam trained with future offsets 4 8 12 16 on 50 scripted demonstrations each of
#    button-press-topdown-v3 and drawer-open-v3, then evaluated on 50 held-out seeds per task three ways: K=1
#    (a call every step), fixed K=8, and adaptive (up to 16 steps, replanning at step 4, 8 or 12 as soon as the
#    surprise exceeds a threshold). The threshold is the 75th percentile of the surprises the same model shows on
#    10 calibration episodes per task (other seeds), i.e. it replans early on the most surprising quarter of checks.
# 2. The fidelity-latency dial (`wam eval --sweep`) for that fast-wam (future skipped: sampler steps x K; future
#    predicted: prediction horizon x sampler steps) and for a render-and-decode model (pixel-latent, diffusion,
#    joint: sampler steps x future skipped, truncated or predicted-and-decoded), on drawer-open-v3, 20 episodes
#    per point.
# 3. The render-and-decode model as a simulator: `wam dream` on one real episode of its own policy.
# Writes results/deployment/{adaptive/*.json,sweep-fast-wam/,sweep-render/,dream/}; then
# `python benchmarks/deployment_table.py` prints the tables. The KV-cache ratio is benchmarks/kv_cache.py.
#   usage: bash benchmarks/deployment.sh            (after `bash scripts/setup.sh`)
#   knobs: OUT=outputs/deployment STEPS=3000 EPISODES=50 SWEEP_EPISODES=20
#          RENDER_RUN=outputs/anatomy/diffusion-joint (reuse the anatomy benchmark's model instead of training one)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-outputs/deployment} RESULTS=${RESULTS:-results/deployment}
STEPS=${STEPS:-3000} EPISODES=${EPISODES:-50} SWEEP_EPISODES=${SWEEP_EPISODES:-20}
TASKS=button-press-topdown-v3,drawer-open-v3
mkdir -p "$OUT" "$RESULTS/adaptive"

wam collect --tasks "$TASKS" --episodes 50 --out "$OUT/data" --track vision --workers 2
[[ -f "$OUT/fast-wam/model/model.safetensors" ]] || \
  wam train --preset fast-wam --data "$OUT/data" --out "$OUT/fast-wam" --steps "$STEPS" --future-offsets 4 8 12 16
run=$OUT/fast-wam

evaluate() {  # name, then wam eval arguments; skipped when its result exists (resumable)
  local name=$1; shift
  [[ -f "$RESULTS/adaptive/$name.json" ]] && return
  wam eval --run "$run" --tasks "$TASKS" --max-steps 300 --out "$OUT/eval-$name" "$@"
  cp "$OUT/eval-$name/eval_info.json" "$RESULTS/adaptive/$name.json"
}
evaluate calibration --episodes 10 --seed 5000 --n-action-steps 16 --surprise inf
threshold=$(python -c "import json; print(json.load(open('$RESULTS/adaptive/calibration.json'))['model']['deployment']['surprise_quantiles']['p75'])")
evaluate k1 --episodes "$EPISODES" --deployment single-step
evaluate k8 --episodes "$EPISODES" --n-action-steps 8
evaluate adaptive --episodes "$EPISODES" --n-action-steps 16 --surprise "$threshold"

# The fidelity-latency dial on fast-wam, and on a render-and-decode model trained on drawer-open-v3.
wam eval --run "$run" --tasks drawer-open-v3 --episodes "$SWEEP_EPISODES" --max-steps 300 \
  --out "$RESULTS/sweep-fast-wam/skipped" --sweep inference-steps=2,5,10 n-action-steps=4,8
wam eval --run "$run" --tasks drawer-open-v3 --episodes "$SWEEP_EPISODES" --max-steps 300 \
  --out "$RESULTS/sweep-fast-wam/predicted" --future predict --sweep future-horizon=1,2,4 inference-steps=2,10
render=${RENDER_RUN:-$OUT/render}
[[ -f "$render/model/model.safetensors" ]] || \
  wam train --data "$OUT/data" --out "$render" --steps "$STEPS" --substrate pixel-latent --coupling joint \
    --backbone diffusion
wam eval --run "$render" --tasks drawer-open-v3 --episodes "$SWEEP_EPISODES" --max-steps 300 \
  --out "$RESULTS/sweep-render/decoded" --decode --sweep inference-steps=2,5,10 future=truncate,predict
wam eval --run "$render" --tasks drawer-open-v3 --episodes "$SWEEP_EPISODES" --max-steps 300 \
  --out "$RESULTS/sweep-render/skipped" --sweep inference-steps=2,5,10 future=skip
# The render model as a simulator: a real episode of its own policy, replayed in its dream.
wam dream --run "$render" --task drawer-open-v3 --out "$RESULTS/dream" --steps 96 --policy model
python benchmarks/deployment_table.py "$RESULTS"
