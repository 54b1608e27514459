#!/usr/bin/env bash
# Proves the LeRobot interoperability both ways with LeRobot's own code, on LeRobot 0.4.4 (the newest release for
# Python 3.11) and 0.6.1 (the newest, Python 3.12):
#   1. LeRobot loads datasets `wam collect` wrote (PNG images and mp4 video, and action-free video): task text,
#      action (or frame) chunks through delta_timestamps, a DataLoader, the streaming dataset, and its dataset tools
#      (delete, split + merge, remove a feature, append an episode with its writer);
#   2. wam reads, checks, trains on and evaluates in PushT the same episodes written again by LeRobot's writer, with
#      images and with video, co-trains on LeRobot's copy of the action-free video, and reads what LeRobot's tools
#      made of its own datasets.
# Each LeRobot lives in its own virtualenv (it pins an older torch than ours): torch 2.14.1 + torchvision 0.29.1
# (the pair whose torchvision imports on a CPU machine), LeRobot with --no-deps plus the dependencies its dataset
# code needs, torchcodec 0.14 for video (it needs FFmpeg's shared libraries, installed with apt). About 6 GB per
# virtualenv, 3-5 min each the first time.
#   usage: bash scripts/check_lerobot.sh      (after `bash scripts/setup.sh`)
#   knobs: VENVS=~/.cache/wam-lerobot EPISODES=6 OUT=outputs/check-lerobot LOG=results/interop/check_lerobot.log
#          PYTHON311, PYTHON312 (default: python3.X on PATH, else pyenv's)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
VENVS=${VENVS:-$HOME/.cache/wam-lerobot}
EPISODES=${EPISODES:-6}
OUT=${OUT:-outputs/check-lerobot}
LOG=${LOG:-results/interop/check_lerobot.log}
find_python() {  # X.Y: an interpreter of that version
  if python"$1" --version >/dev/null 2>&1; then command -v python"$1"; return; fi
  ls -d "$(pyenv root 2>/dev/null)"/versions/"$1".*/bin/python"$1" 2>/dev/null | tail -1
}
PYTHON311=${PYTHON311:-$(find_python 3.11)}
PYTHON312=${PYTHON312:-$(find_python 3.12)}
mkdir -p "$(dirname "$LOG")" "$OUT"
# The log names no machine: paths relative to the checkout, the virtualenvs as VENVS, the home as ~.
exec > >(sed -u -e "s#$PWD/##g" -e "s#$VENVS#VENVS#g" -e "s#$HOME#~#g" | tee "$LOG") 2>&1
failures=0
step() { echo; echo "== $*"; }
record() { if "$@"; then echo "ok    $*"; else echo "FAIL  $*"; failures=$((failures + 1)); fi; }

install_lerobot() {  # VERSION PYTHON DEPENDENCIES...
  local version=$1 python=$2 venv=$VENVS/lerobot-$1
  shift 2
  [ -f "$venv/.installed" ] && return 0
  rm -rf "$venv"
  [ -n "$python" ] && "$python" -m venv "$venv" || { echo "no Python for LeRobot $version"; return 1; }
  # Without our constraints file: it pins torch 2.13.0, LeRobot's virtualenv has its own torch.
  local pip=(env -u PIP_CONSTRAINT "$venv/bin/pip" install --quiet)
  "${pip[@]}" torch==2.14.1 torchvision==0.29.1 && "${pip[@]}" --no-deps "lerobot==$version" && "${pip[@]}" "$@" \
    && "${pip[@]}" --no-deps torchcodec==0.14.0 && touch "$venv/.installed"
}
lerobot_python() {  # VERSION ARGS...: LeRobot's Python, its AV1 encoder quiet
  local version=$1; shift; SVT_LOG=1 PYTHONWARNINGS=ignore "$VENVS/lerobot-$version/bin/python" "$@"
}
install_or_stop() {  # VERSION PYTHON DEPENDENCIES...
  if install_lerobot "$@" >"$OUT/install-$1.log" 2>&1; then
    echo "ok    LeRobot $1: $("$VENVS/lerobot-$1/bin/pip" freeze | grep -E '^(lerobot|torch|torchvision|torchcodec|datasets|numpy|pandas|pyarrow|av)==' | tr '\n' ' ')"
  else
    echo "FAIL  LeRobot $1 did not install ($OUT/install-$1.log):"; tail -5 "$OUT/install-$1.log"; exit 1
  fi
}

step "FFmpeg shared libraries for torchcodec"
if ! ldconfig -p | grep -q libavcodec; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8 >/dev/null
fi
ldconfig -p | grep -q libavcodec && echo "FFmpeg shared libraries: present"

step "LeRobot virtualenvs (VENVS)"
install_or_stop 0.4.4 "$PYTHON311" "numpy>=2.0,<2.3" "pandas>=2.2.2,<2.4" "datasets>=4.0.0,<5.0.0" \
  "huggingface-hub>=0.34.2,<0.36.0" "av>=15.0.0,<16.0.0" "jsonlines>=4.0.0,<5.0.0" "packaging>=24.2,<26.0" \
  "draccus==0.10.0" "einops>=0.8.0,<0.9.0" "deepdiff>=7.0.1,<9.0.0" "termcolor>=2.4.0,<4.0.0" \
  "imageio[ffmpeg]>=2.34.0,<3.0.0" "accelerate>=1.10.0,<2.0.0"
install_or_stop 0.6.1 "$PYTHON312" "numpy>=2.0.0,<2.3.0" "Pillow>=10.0.0,<13.0.0" "einops>=0.8.0,<0.9.0" \
  "draccus>=0.11.6,<0.12.0" "huggingface-hub>=1.6.0,<2.0.0" "requests>=2.32.0,<3.0.0" "safetensors>=0.4.3,<1.0.0" \
  "packaging>=24.2,<26.0" "termcolor>=2.4.0,<4.0.0" "tqdm>=4.66.0,<5.0.0" "gymnasium>=1.1.1,<2.0.0" \
  "datasets>=4.8.0,<5.0.0" "pandas>=2.0.0,<3.0.0" "pyarrow>=21.0.0,<30.0.0" "av>=15.0.0,<16.0.0" \
  "jsonlines>=4.0.0,<5.0.0"

step "wam writes PushT demonstrations: PNG images, and mp4 video; and action-free video (no action feature)"
record wam collect --suite pusht --tasks pusht --episodes "$EPISODES" --out "$OUT/ours-image" --workers 2
record wam collect --suite pusht --tasks pusht --episodes "$EPISODES" --out "$OUT/ours-video" --workers 2 --video
record wam collect --suite pusht --tasks pusht --episodes "$EPISODES" --out "$OUT/ours-noactions" --workers 2 \
  --video --no-actions --seed 1000

for version in 0.4.4 0.6.1; do
  for kind in image video noactions; do
    step "LeRobot $version reads and edits wam's $kind dataset, and writes its episodes again"
    record lerobot_python "$version" scripts/lerobot_side.py --ours "$OUT/ours-$kind" --work "$OUT/lerobot-$version-$kind" \
      2> >(grep -v "%|" >&2)
  done
  work=$OUT/lerobot-$version-image
  for copy in "$work"/{lerobot-image,lerobot-video,deleted,merged,appended} "$OUT/lerobot-$version-noactions/lerobot-video"; do
    step "wam reads what LeRobot $version wrote: $copy"
    if wam data check "$copy"; then
      echo "ok    wam data check $copy"
    else
      echo "(statistics LeRobot wrote do not match the frames: wam data stats recomputes them)"
      record wam data stats "$copy"
      record wam data check "$copy"
    fi
  done
  step "wam co-trains on LeRobot $version's copy of its action-free video"
  record wam train --preset fast-wam --data "$work/lerobot-image" --video "$OUT/lerobot-$version-noactions/lerobot-video" \
    --out "$OUT/run-$version-cotrain" --steps 20 --batch-size 8
  for copy in lerobot-image lerobot-video; do
    step "wam trains on LeRobot $version's $copy dataset and evaluates in PushT"
    record wam train --preset vla --data "$work/$copy" --out "$OUT/run-$version-$copy" --steps 20 --batch-size 8
    record wam eval --run "$OUT/run-$version-$copy" --tasks pusht --episodes 2 --max-steps 30 \
      --out "$OUT/run-$version-$copy/eval"
  done
done

step "summary"
echo "$failures failed"
exit $((failures > 0))
