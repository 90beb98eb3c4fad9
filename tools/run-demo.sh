#!/usr/bin/env bash
# Runs the demo job with an already built tpinfer (BUILD_DIR, default build/):
# 2 MPI ranks (TP=2) over the demo model and inputs/prompts.jsonl.
# usage: tools/run-demo.sh [OUTPUT]   (default out/demo.jsonl)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=${1:-$root/out/demo.jsonl}
source "$root/tools/mpirun-env.sh"
model=$build/demo-model.h5
# The demo model has seeded random weights (no trained model ships yet).
[ -s "$model" ] || "$build/tpinfer" make-model --config "$root/inputs/demo-config.json" \
  --output "$model" --seed 1
mkdir -p "$(dirname "$out")"
rm -f "$out"  # the demo starts fresh; tpinfer itself never overwrites results
mpirun -np 2 "$build/tpinfer" run --model "$model" --input "$root/inputs/prompts.jsonl" \
  --output "$out" --tp 2 --max-new-tokens 32
echo "demo: $(wc -l <"$out") results in $out"
