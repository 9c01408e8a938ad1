#!/usr/bin/env bash
# The one command of a GPU session (device tool): run(command="bash benchmarks/gpu_session.sh", carry=[".whl"]).
# Installs what the GPU image lacks from ./.whl (prepare it here with: pip download pytest -d .whl), then runs the
# prepared check (benchmarks/gpu_check.py) within its time budget; results land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import pytest" 2>/dev/null || python -m pip install --quiet --no-index --find-links .whl pytest
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 520 python benchmarks/gpu_check.py --out "${OUT:-gpu-check}" --budget-s 450
python benchmarks/gpu_projection.py --gpu-check "${OUT:-gpu-check}/gpu_check.json" --out "${OUT:-gpu-check}/projection" || true
