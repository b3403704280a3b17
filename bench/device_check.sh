#!/usr/bin/env bash
# The PyTorch side on an accelerator: the real-architecture test bank trained on the GPU
# (bit-identical with and without the monitor, statistics against a direct computation,
# `babysitter check` silent, planted problems found), then the overhead benchmark there.
#
# Usage: bash bench/device_check.sh [results folder]    (default bench/results)
# Needs a CUDA build of torch and a visible device; exits 2 without one. The figures go to
# RESULTS/overhead-cuda.json; what the tests said is in the output.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
out=${1:-bench/results}
mkdir -p "$out"

if ! "$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device: nothing to check here")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF
then
    exit 2
fi

status=0
# Deterministic kernels, so that training with and without the monitor can be compared bit for bit.
BABYSITTER_TEST_DEVICE=cuda CUBLAS_WORKSPACE_CONFIG=:4096:8 \
    "$PY" -m pytest -q -ra -p no:cacheprovider tests/monitor/test_torch_models.py || status=1
"$PY" bench/overhead.py --device cuda --models mlp,bn_cnn,transformer --compile --no-tensorboard --no-wandb \
    --out "$out/overhead-cuda.json" || status=1
exit $status
