#!/usr/bin/env bash
# The GPU check of issue 15, about 8 minutes on one GPU: the tests marked `cuda` (the
# compiled and eager aggregate-KL kernels against the literal formula, values and gradients;
# fp32 and bf16 runs), then benchmarks/gpu_figures.py (training samples/s and the aggregate
# KL at M = 2048, 16384, 65536). Given a budget in seconds, it then runs the full-scale
# experiments whose claims need a GPU (benchmarks/gpu_claims.py, into runs/gpu, in the
# priority order there). Record its output in docs/performance.md and the claims in
# docs/claims.md with the date and the GPU.
#
#   bash benchmarks/gpu_check.sh [CLAIMS_BUDGET_S [DATA_DIR]]   # from the repository root
#
# Without a GPU the cuda tests skip and the figures are left out (exit 0). Needs a Python
# with torch (a CUDA build for the GPU parts)
# and wiseale's requirements (pip install -e .).
set -uo pipefail
PYTHON=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
date -u +"%Y-%m-%d %H:%M UTC"
status=0
timeout 180 "$PYTHON" -m pytest -p no:cacheprovider -q -m cuda tests/test_cuda.py -rs || status=1
if "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    timeout 300 "$PYTHON" benchmarks/gpu_figures.py || status=1
    if [ "${1:-0}" -gt 0 ]; then
        "$PYTHON" benchmarks/gpu_claims.py --budget "$1" --out runs/gpu \
            ${2:+--data-dir "$2"} || status=1
    fi
else
    echo "no CUDA GPU visible: the cuda tests skipped and the GPU figures were not measured"
fi
exit $status
