#!/usr/bin/env bash
# Issue 16's GPU check (bench/gpu_check.py): every GPU case, each in its own process with a timeout,
# within an 8-minute budget; writes bench/results/gan_cuda.json (and $OUT/gan_cuda.json when OUT is
# set) and ends with one line per target: met / not met / not run.
#   bash bench/gpu_check.sh               # on a CUDA host, from anywhere
#   bash bench/gpu_check.sh --cpu-smoke   # the same code paths at toy sizes on a CPU
# The interpreter: $PYTHON, else the first of .venv/bin/python, python3, python that imports torch.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in .venv/bin/python python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1; then
      py="$cand"
      break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "gpu_check: no Python with torch found (set PYTHON=...)" >&2
  exit 2
fi
exec "$py" -u bench/gpu_check.py "$@"
