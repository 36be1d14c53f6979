#!/usr/bin/env bash
# Testing on Slurm: GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/slurm_run.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
