#!/usr/bin/env bash
# Idempotent set-up: a project virtualenv with torch pinned to 2.13.0 (CPU build where one is provided locally),
# every later install constrained to that torch so pip never pulls CUDA wheels, and a check that MuJoCo can
# render offscreen through EGL (installing the EGL/GL libraries with apt only when that check fails).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
source scripts/env.sh
stamp=.venv/.wam-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "torch==2.13.0"
  python -m pip install --quiet -c constraints.txt -e ".[test]"
  touch "$stamp"
fi
render_check='import os; os.environ["MUJOCO_GL"]="egl"; import mujoco; r=mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8); r.render(); r.close()'
if ! python -c "$render_check" >/dev/null 2>&1; then
  echo "setup: MuJoCo cannot render through EGL; installing libegl1 and libgl1 with apt" >&2
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libegl1 libgl1 libgles2 >/dev/null
  python -c "$render_check"
fi
