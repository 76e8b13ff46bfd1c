#!/usr/bin/env bash
# SASRec on CUDA for a few epochs, with throughput beside one CPU epoch (see bench/gpu_check.py).
# On a bare GPU machine with torch installed: bash bench/gpu_check.sh [--epochs 3 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
