#!/usr/bin/env bash
# The main job on a fresh machine: set up (once), generate the embedded data
# (once), train and evaluate. Arguments go to tools/demo.py, e.g. --model all.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
# work_dirs/ and data/ (the tools' defaults) go under the checkout.
cd "$ROOT"
exec "${MMEXT_VENV:-$ROOT/.venv}/bin/python" "$ROOT/tools/demo.py" "$@"
