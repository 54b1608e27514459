# Sourced by the project's scripts: the virtualenv, headless MuJoCo rendering, and the torch pin.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MUJOCO_GL=egl
export PIP_CONSTRAINT="$ROOT/constraints.txt"
[ -f "$ROOT/.venv/bin/activate" ] && source "$ROOT/.venv/bin/activate"
