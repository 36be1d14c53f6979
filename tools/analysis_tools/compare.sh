#!/usr/bin/env bash
# Train configs on the embedded data with fixed seeds and build the leaderboard:
#   bash tools/analysis_tools/compare.sh CONFIG [CONFIG ...] [--seeds 0 1] [--embedded smoke]
# (a thin wrapper of tools/analysis_tools/compare.py; see its --help)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}"
exec "$PYTHON" "$ROOT/tools/analysis_tools/compare.py" "$@"
