#!/usr/bin/env bash
# Install everything the tests need (virtual environment, PyTorch CPU, Debian's Chromium)
# and run the whole suite. Extra arguments go to pytest, e.g. bash test.sh -k reader
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
# torch is pinned: this version installs a CPU build; an unpinned torch pulls a CUDA build of several GB.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" "torch==2.13.0"
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
exec .venv/bin/python -m pytest "$@"
