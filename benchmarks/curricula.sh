#!/usr/bin/env bash
# Data curricula on MetaWorld (docs/curricula.md): does action-free video pay, through which stage, from which
# source? Every cell is one training run and one closed-loop evaluation; finished cells are kept, so re-running
# continues where a sitting stopped. After each cell the table is rewritten (RESULTS/summary.json, table.md).
#
#   usage: bash benchmarks/curricula.sh
#   settings (environment):
#     EXPERIMENTS="amount stages sources split"   which experiments, in this order
#     TASKS=...            the tasks (default: 8 spanning easy, medium, hard and very hard)
#     OTHER_TASKS=...      the tasks of the "other tasks" video source (none of TASKS)
#     PRESETS="vla fast-wam uva flare alam"   presets of the amount experiment
#     N_LIST="1 3 10"      labelled demonstrations per task;  M=50   video episodes per task
#     STEPS=3000 EPISODES=20 (evaluation episodes per task) OUT=outputs/curricula RESULTS=results/curricula
#     DREAMS=20 DREAM_STEPS=80   synthetic experiment: dreamed episodes per task, control steps per dream
#
# Experiments:
#   amount   every preset at every N, without video and with M video episodes per task (co-training; latent
#            actions for vla, which predicts no future, and for alam and lda-1b, as their papers train)
#   stages   at N=3: co-training, video pretraining and latent actions, each with the same-view video
#   sources  at N=3, co-training fast-wam: video of the same view, another viewpoint, other colours, a noisy
#            actor, and other tasks
#   split    labelled demonstrations (N=10) for the first half of TASKS, video only for the other half: success on
#            the video-only tasks against the same model trained without their video
#   synthetic  at N=3 (DreamGen): a uwm that also predicts the next frame (--future-offsets 1 8 16) is trained on
#            the demonstrations, dreams DREAMS episodes per task from real first frames and labels them with its
#            inverse dynamics; fast-wam trains on the demonstrations plus the dreams (half of each batch dreamed).
#            Its baseline is the amount experiment's fast-wam n3-m0 cell (the same training command), linked.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

EXPERIMENTS=${EXPERIMENTS:-amount stages sources split synthetic}
TASKS=${TASKS:-drawer-open-v3,button-press-topdown-v3,door-open-v3,plate-slide-v3,coffee-pull-v3,sweep-into-v3,push-v3,stick-push-v3}
OTHER_TASKS=${OTHER_TASKS:-window-open-v3,drawer-close-v3,button-press-v3,faucet-open-v3,reach-v3,lever-pull-v3,handle-press-v3,door-close-v3}
PRESETS=${PRESETS:-vla fast-wam uva flare alam}
N_LIST=${N_LIST:-1 3 10}
M=${M:-50}
STEPS=${STEPS:-3000}
EPISODES=${EPISODES:-20}
OUT=${OUT:-outputs/curricula}
RESULTS=${RESULTS:-results/curricula}
DREAMS=${DREAMS:-20}
DREAM_STEPS=${DREAM_STEPS:-80}  # the demonstrations of TASKS last 51-93 steps (the expert stops at success)
VIDEO_STEPS=$((STEPS / 2))  # the staged curricula spend half the steps on video
IFS=, read -r -a all_tasks <<< "$TASKS"
half=$(( ${#all_tasks[@]} / 2 ))
TASKS_A=$(IFS=,; echo "${all_tasks[*]:0:$half}")
TASKS_B=$(IFS=,; echo "${all_tasks[*]:$half}")
mkdir -p "$OUT/data" "$OUT/cells" "$RESULTS"

collect() {  # NAME ARGS...: a collection, resumed if unfinished
  local out=$OUT/data/$1
  shift
  wam collect --out "$out" --workers 2 "$@" > "$out.log" 2>&1 || { echo "FAILED collect $out (see $out.log)" >&2; exit 1; }
}

video() {  # SOURCE: the video dataset of a source (collected on first use), seeds apart from the demonstrations
  local name=video-$1
  case $1 in
    same) collect "$name" --tasks "$TASKS" --episodes "$M" --no-actions --seed 20000 --keep-failed ;;
    camera | colour) collect "$name" --tasks "$TASKS" --episodes "$M" --no-actions --seed 20000 --keep-failed \
      --shift "$1" ;;
    noisy) collect "$name" --tasks "$TASKS" --episodes "$M" --no-actions --seed 20000 --action-noise 0.5 ;;
    other) collect "$name" --tasks "$OTHER_TASKS" --episodes "$M" --no-actions --seed 20000 --keep-failed ;;
    split) collect "$name" --tasks "$TASKS_B" --episodes "$M" --no-actions --seed 20000 --keep-failed ;;
  esac
  echo "$OUT/data/$name"
}

labelled() {  # N [TASKS]: N demonstrations per task
  local name=labelled-$1${2:+-split}
  collect "$name" --tasks "${2:-$TASKS}" --episodes "$1"
  echo "$OUT/data/$name"
}

cell() {  # NAME EVAL_TASKS WAM-TRAIN-ARGS...: train (resumable) and evaluate one cell, then rewrite the table
  local name=$1 tasks=$2 dir=$OUT/cells/$1
  shift 2
  mkdir -p "$dir"
  if [ ! -f "$dir/eval/eval_info.json" ]; then
    echo "--- $name"
    wam train --out "$dir/run" --steps "$STEPS" --save-every 500 --keep-checkpoints 1 --resume "$@" \
      > "$dir/train.log" 2>&1 || { echo "FAILED train $name (see $dir/train.log)"; return; }
    wam eval --run "$dir/run" --tasks "$tasks" --episodes "$EPISODES" --out "$dir/eval" > "$dir/eval.log" 2>&1 \
      || { echo "FAILED eval $name (see $dir/eval.log)"; return; }
  fi
  python benchmarks/curricula_table.py "$OUT/cells" "$RESULTS"
}

with_video() {  # PRESET: how a preset uses video in the amount experiment: through latent actions where it has no
  # other way (a policy without a future) or its paper does so (ALAM, LDA-1B), else co-training
  case $1 in
    vla | alam | lda-1b) echo "--curriculum latent-actions --video-steps $VIDEO_STEPS" ;;
    *) echo "--curriculum cotrain" ;;
  esac
}

for experiment in $EXPERIMENTS; do
  case $experiment in
    amount)
      for n in $N_LIST; do
        for preset in $PRESETS; do
          # shellcheck disable=SC2046  # with_video gives several words
          cell "amount/$preset/n$n-m0" "$TASKS" --preset "$preset" --data "$(labelled "$n")"
          cell "amount/$preset/n$n-m$M" "$TASKS" --preset "$preset" --data "$(labelled "$n")" \
            --video "$(video same)" $(with_video "$preset")
        done
      done ;;
    stages)
      for preset in fast-wam uva; do
        cell "stages/$preset/none" "$TASKS" --preset "$preset" --data "$(labelled 3)"
        cell "stages/$preset/cotrain" "$TASKS" --preset "$preset" --data "$(labelled 3)" --video "$(video same)"
        for stage in pretrain latent-actions; do
          cell "stages/$preset/$stage" "$TASKS" --preset "$preset" --data "$(labelled 3)" --video "$(video same)" \
            --curriculum "$stage" --video-steps "$VIDEO_STEPS"
        done
      done ;;
    sources)
      for source in same camera colour noisy other; do
        cell "sources/fast-wam/$source" "$TASKS" --preset fast-wam --data "$(labelled 3)" --video "$(video "$source")"
      done ;;
    split)
      for preset in fast-wam vla; do
        cell "split/$preset/without-video" "$TASKS_B" --preset "$preset" --data "$(labelled 10 "$TASKS_A")"
        # shellcheck disable=SC2046
        cell "split/$preset/with-video" "$TASKS_B" --preset "$preset" --data "$(labelled 10 "$TASKS_A")" \
          --video "$(video split)" $(with_video "$preset")
      done ;;
    synthetic)
      generator=$OUT/generators/uwm-n3
      mkdir -p "$OUT/generators"
      wam train --out "$generator" --preset uwm --future-offsets 1 8 16 --data "$(labelled 3)" --steps "$STEPS" \
        --save-every 500 --keep-checkpoints 1 --resume > "$generator.log" 2>&1 \
        || { echo "FAILED train $generator (see $generator.log)" >&2; exit 1; }
      dreams=$OUT/data/dreamed-3
      wam synthesize --run "$generator" --tasks "$TASKS" --episodes "$DREAMS" --steps "$DREAM_STEPS" \
        --labels inverse --out "$dreams" > "$dreams.log" 2>&1 || { echo "FAILED synthesize (see $dreams.log)" >&2; exit 1; }
      mkdir -p "$OUT/cells/synthetic/fast-wam"
      cell "amount/fast-wam/n3-m0" "$TASKS" --preset fast-wam --data "$(labelled 3)"
      ln -sfn ../../amount/fast-wam/n3-m0 "$OUT/cells/synthetic/fast-wam/none"
      cell "synthetic/fast-wam/dreamed" "$TASKS" --preset fast-wam --data "$(labelled 3)" --synthetic "$dreams" ;;
    *) echo "unknown experiment $experiment (amount, stages, sources, split, synthetic)"; exit 1 ;;
  esac
done
cat "$RESULTS/table.md"
