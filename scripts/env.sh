# Sourced by the project's scripts: the virtualenv, headless MuJoCo rendering, and the torch pin.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MUJOCO_GL=egl
export PIP_CONSTRAINT="$ROOT/constraints.txt"
if [ -f "$ROOT/.venv/bin/activate" ]; then  # else: whatever environment is active (an `if` keeps `set -e` callers alive)
  source "$ROOT/.venv/bin/activate"
fi
