#!/usr/bin/env bash
# Set up (first time) and start the dashboard with a demo training running live.
# Usage: bash run.sh [babysitter demo options, e.g. --port 8050]
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install only when the packaging changed since the last install: the install is editable, so
# code changes need none, and a second start goes straight to the demo. pip's output goes to a
# log that is shown only when the install fails.
stamp=.venv/.babysitter-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/babysitter ]; then
    echo "Installing Babysitter and its dependencies into .venv (first start, or pyproject.toml changed)..."
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e . >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        exit 1
    fi
    echo "$want" >"$stamp"
fi
exec .venv/bin/babysitter demo "$@"
