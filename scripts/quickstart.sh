#!/usr/bin/env bash
# The main job on a fresh machine: set up, then collect -> train fast-wam -> evaluate -> accuracy-at-budget table.
# Extra arguments go to `wam quickstart` (see `wam quickstart --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
wam quickstart "$@"
