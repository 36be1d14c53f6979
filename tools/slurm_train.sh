#!/usr/bin/env bash
# Training on Slurm: GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/slurm_run.sh" train.py "$1" "$2" "$3" \
    --work-dir="$4" "${@:5}"
