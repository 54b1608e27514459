#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then pytest (unit, contract, bad-input, simulator and end-to-end).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then  # the report's browser test
  echo "test: installing Debian's chromium and chromium-driver with apt" >&2
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
source scripts/env.sh
# Two workers (pytest-xdist), one per core of the 2-core machines the suite is sized for; whole files go to one
# worker, so a module's fixtures (a collected dataset, a trained bench) are built once.
python -m pytest -n 2 --dist loadfile "$@"
