#!/usr/bin/env bash
# The test suite on a fresh machine: set up (once), then pytest. Extra
# arguments go to pytest, e.g. -k registry or -m "not slow".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# One pytest-xdist worker per core, at most 4 (each holds torch, mmdet and mmseg;
# MMEXT_TEST_WORKERS=0 runs in one process);
# a module's tests that share a training fixture stay on one worker
# (tests/conftest.py marks them for --dist loadgroup).
exec "${MMEXT_VENV:-$ROOT/.venv}/bin/python" -m pytest tests \
    -n "${MMEXT_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}" --dist loadgroup "$@"
