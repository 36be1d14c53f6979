#!/usr/bin/env bash
# The test suite on a fresh machine: set up (once), then pytest. Extra
# arguments go to pytest, e.g. -k registry or -m "not slow".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${MMEXT_VENV:-$ROOT/.venv}/bin/python" -m pytest tests "$@"
