#!/usr/bin/env bash
# WAM-Bench under a published protocol (default 10-demos), in the order its issue asks: the groups that separate
# designs first (hard, very hard), one preset at a time, seed by seed. Each finished stage is kept, so re-running
# continues where a sitting stopped; after every preset the leaderboard of all presets finished so far is rewritten
# (each earlier preset keeps the timing its record holds) and printed as Markdown. To time every preset again in one
# pass on the idle machine at the end: the last wam bench command below with --retime.
#
#   usage: bash benchmarks/protocol.sh
#   settings (environment): PROTOCOL=10-demos BENCH_GROUPS="hard very-hard" BENCH_SEEDS="0 1 2" BENCH_PRESETS="vla flare ..."
#                           BENCH_HEADLINE="flare vla uwm" (entries run at every seed of BENCH_SEEDS, the others at the first;
#                           empty: all at every seed) OUT=outputs/bench-<protocol> RESULTS=results/bench-<protocol>
#                           EVAL_JOBS=<cores> (evaluations at once, each on one thread: see wam bench --eval-jobs)
#   The defaults rebuild the committed table: every preset at seed 0, the three headline rows at seeds 0, 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

PROTOCOL=${PROTOCOL:-10-demos}
BENCH_GROUPS=${BENCH_GROUPS:-hard very-hard}  # (bash reserves GROUPS)
BENCH_SEEDS=${BENCH_SEEDS:-0 1 2}
BENCH_PRESETS=${BENCH_PRESETS:-vla flare fast-wam vpp uva aim uwm gr-1 dreamzero vjepa2-ac lda-1b pointworld alam gigaworld-policy unipi world-model-mpc}
OUT=${OUT:-outputs/bench-$PROTOCOL}
RESULTS=${RESULTS:-results/bench-$PROTOCOL}
BENCH_HEADLINE=${BENCH_HEADLINE-flare vla uwm}  # (set empty: every preset at every seed)
EVAL_JOBS=${EVAL_JOBS:-$(nproc)}

finished=()
for preset in $BENCH_PRESETS; do
  finished+=("$preset")  # the presets already finished are reused as they are, their timing too
  headline=()  # with BENCH_HEADLINE: the headline entries finished so far (perhaps none) at every seed
  if [ -n "$BENCH_HEADLINE" ]; then
    headline=(--headline)
    for entry in $BENCH_HEADLINE; do [[ " ${finished[*]} " == *" $entry "* ]] && headline+=("$entry"); done
  fi
  # shellcheck disable=SC2086  # groups and seeds are word lists
  wam bench --protocol "$PROTOCOL" --groups $BENCH_GROUPS --seeds $BENCH_SEEDS --presets "${finished[@]}" \
    "${headline[@]}" --eval-jobs "$EVAL_JOBS" --out "$OUT" --results "$RESULTS"
  python benchmarks/bench_table.py "$RESULTS" > "$RESULTS/table.md"
done
cat "$RESULTS/table.md"
