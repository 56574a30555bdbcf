#!/usr/bin/env bash
# The GPU measurements in one command, within 10 minutes on a machine with a CUDA GPU:
# batched against one-by-one finals (bench/batch_finals.py) and the load table at 16 to
# 128 live streams beside 32 silent sessions (bench/load_bench.py, server --device cuda,
# its default batches of 8). Results go to $OUT_DIR (default bench/results/gpu), in a
# RESULTS.md of their own, so that a GPU run never overwrites the CPU tables.
#
#   bench/gpu.sh                 # on the GPU machine, from the repository root
#   bench/gpu.sh --check         # the same steps, tiny, on the CPU: tests this script
#
# Needs: the project installed (pip install -e .), ../shared/speech beside the checkout
# (or SPEECH_DIR), and, for CUDA, CTranslate2's CUDA 12 libraries (pip's nvidia-cublas-cu12
# and nvidia-cudnn-cu12 where the system has none).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
SPEECH_DIR=${SPEECH_DIR:-../shared/speech}
OUT_DIR=${OUT_DIR:-bench/results/gpu}
mkdir -p "$OUT_DIR"
cp bench/RESULTS.md "$OUT_DIR/RESULTS.md" 2>/dev/null || true

if [ "${1:-}" = "--check" ]; then
    device=cpu; sizes="1 2"; streams="1 2"; seconds=6; silent=2
else
    device=cuda; sizes="1 2 4 8 16"; streams="16 32 64 128"; seconds=30; silent=32
    "$PY" -c 'import ctranslate2, sys; n = ctranslate2.get_cuda_device_count(); print(f"CUDA devices: {n}"); sys.exit(0 if n else 1)' \
        || { echo "gpu.sh: CTranslate2 sees no CUDA device (use --check on a CPU)" >&2; exit 1; }
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi

start=$(date +%s)
echo "== batched finals ($device)"
timeout 240 "$PY" bench/batch_finals.py --device "$device" --sizes $sizes --repeats 3 \
    --out "$OUT_DIR/RESULTS.md"
echo "== load table ($device, streams: $streams, $silent silent beside)"
# shellcheck disable=SC2086
timeout 420 "$PY" bench/load_bench.py --device "$device" --n $streams --seconds "$seconds" \
    --silent "$silent" --idle-run 0 --no-solo --no-admission --speech-dir "$SPEECH_DIR" \
    --out "$OUT_DIR/RESULTS.md"
echo "gpu.sh: done in $(( $(date +%s) - start )) s; tables in $OUT_DIR/RESULTS.md"
