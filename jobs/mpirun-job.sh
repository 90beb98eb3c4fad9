#!/usr/bin/env bash
# Runs a tpinfer batch job on this machine with mpirun.
# usage: jobs/mpirun-job.sh NP MODEL INPUT OUTPUT [extra tpinfer run options...]
#   e.g. jobs/mpirun-job.sh 4 model.h5 prompts.jsonl out.jsonl --tp 2
# Exit code: tpinfer's (0 done; 2 usage/input/model error; 75 restartable; 1 other).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,5p' "$0"; exit 2; }
np=$1 model=$2 input=$3 output=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/tools/mpirun-env.sh"
exec mpirun -np "$np" "${TPINFER_BIN:-$here/build/tpinfer}" run \
  --model "$model" --input "$input" --output "$output" "$@"
