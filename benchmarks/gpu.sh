#!/usr/bin/env bash
# The GPU checks, in one go on a machine with CUDA (about 5 minutes on one H100/H200): the CUDA tests (every
# preset trains and acts, KV cache vs recomputation, the command line in fp32 and bf16, deterministic repeats,
# nccl with two GPUs), then the throughput benchmark of fast-wam and flare at the default and the large width in
# float32 and bf16, and the act latency of every preset.
#
#   usage: DATA=METAWORLD_DATASET [OUT=results/throughput] bash benchmarks/gpu.sh
#
# DATA is any vision-track MetaWorld dataset (`wam collect --tasks button-press-topdown-v3,drawer-open-v3,
# drawer-close-v3 --episodes 10 --out D`); the tests collect their own PushT demonstrations.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${DATA:?set DATA to a MetaWorld vision dataset}"
OUT="${OUT:-results/throughput}"
mkdir -p "$OUT"
gpu=$(python -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
python -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda-tests-$gpu.log"
tests=${PIPESTATUS[0]}
python benchmarks/throughput.py --data "$DATA" --out "$OUT/$gpu.json" --device cuda --presets fast-wam flare \
  --sizes default large --precisions fp32 bf16 --steps 40 --warmup 10 --latency-presets all
exit $(( tests || $? ))
