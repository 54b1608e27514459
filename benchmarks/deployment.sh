#!/usr/bin/env bash
# Deployment benchmark: "dream more or act more?" measured closed-loop, all on 2 CPU cores.
#
# 1. Adaptive chunking. Two models trained with future offsets 4 8 12 16 on 50 scripted demonstrations each of
#    button-press-topdown-v3 and drawer-open-v3 -- fast-wam (diffusion, encoder features) and a hybrid trunk
#    predicting autoencoder latents (flow heads) -- each evaluated on 50 held-out seeds per task three ways: K=1
#    (a call every step), fixed K=8, and adaptive: up to 16 steps, replanning at step 4, 8 or 12 as soon as the
#    surprise exceeds the 75th percentile of the surprises the same model shows on 10 calibration episodes per task
#    (other seeds), i.e. early on the most surprising quarter of checks; and up to 8 steps, replanning at step 4
#    above the median surprise. A third model, the same hybrid trained with offsets 2 4 6 8, checks every 2 steps:
#    fixed K=4 and K=8 against adaptive K<=8 at the median and at the 25th percentile of its calibration surprises.
# 2. The fidelity-latency dial (`wam eval --sweep`) for that fast-wam (future skipped: sampler steps x K; future
#    predicted: prediction horizon x sampler steps) and for a render-and-decode model (pixel-latent, diffusion,
#    joint: sampler steps x future skipped, truncated or predicted-and-decoded), on drawer-open-v3, 20 episodes
#    per point.
# 3. The render-and-decode model as a simulator: `wam dream` on one real episode of its own policy.
# Writes results/deployment/{adaptive/<model>/*.json,sweep-fast-wam/,sweep-render/,dream/}; then
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
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # one core per job, as in the anatomy benchmark
mkdir -p "$OUT" "$RESULTS/adaptive"

wam collect --tasks "$TASKS" --episodes 50 --out "$OUT/data" --track vision --workers 2

adaptive_rows() {  # model name, its future offsets, then `wam train` arguments; finished results are kept
  local name=$1 offsets=$2; shift 2
  local run=$OUT/$name dest=$RESULTS/adaptive/$name
  mkdir -p "$dest"
  [[ -f "$run/model/model.safetensors" ]] || \
    wam train --data "$OUT/data" --out "$run" --steps "$STEPS" --future-offsets $offsets "$@"
  evaluate() {  # result name, then wam eval arguments
    local result=$1; shift
    [[ -f "$dest/$result.json" ]] && return
    wam eval --run "$run" --tasks "$TASKS" --max-steps 300 --out "$run/eval-$result" "$@"
    cp "$run/eval-$result/eval_info.json" "$dest/$result.json"
  }
  evaluate calibration --episodes 10 --seed 5000 --n-action-steps 16 --surprise inf
  quantile() { python -c "import json; print(json.load(open('$dest/calibration.json'))['model']['deployment']['surprise_quantiles'].get('$1', ''))"; }
  evaluate k1 --episodes "$EPISODES" --deployment single-step
  evaluate k4 --episodes "$EPISODES" --n-action-steps 4
  evaluate k8 --episodes "$EPISODES" --n-action-steps 8
  evaluate adaptive --episodes "$EPISODES" --n-action-steps 16 --surprise "$(quantile p75)"
  evaluate adaptive-k8 --episodes "$EPISODES" --n-action-steps 8 --surprise "$(quantile p50)"
  [[ -z "$(quantile p25)" ]] || evaluate adaptive-k8-p25 --episodes "$EPISODES" --n-action-steps 8 --surprise "$(quantile p25)"
}
hybrid=(--substrate pixel-latent --coupling joint --backbone hybrid --parameterization flow)
adaptive_rows hybrid-dense "2 4 6 8" "${hybrid[@]}"
adaptive_rows fast-wam "4 8 12 16" --preset fast-wam
adaptive_rows hybrid "4 8 12 16" "${hybrid[@]}"
run=$OUT/fast-wam

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
