#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then pytest (unit, contract, bad-input, simulator and end-to-end).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
python -m pytest "$@"
