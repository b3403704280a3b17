#!/usr/bin/env bash
# Set up (first time) and start the dashboard with a demo training running live.
# Usage: bash run.sh [babysitter demo options, e.g. --port 8050]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/babysitter demo "$@"
