#!/usr/bin/env bash
# Runs the demo job with an already built tpinfer (BUILD_DIR, default build/):
# 2 MPI ranks (TP=2) over the trained demo model (inputs/demo-model.h5, with
# its tokenizer inside) and the text prompts of inputs/prompts-text.jsonl.
# usage: tools/run-demo.sh [OUTPUT]   (default out/demo.jsonl)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=${1:-$root/out/demo.jsonl}
source "$root/tools/mpirun-env.sh"
mkdir -p "$(dirname "$out")"
rm -f "$out"  # the demo starts fresh; tpinfer itself never overwrites results
mpirun -np 2 "$build/tpinfer" run --model "$root/inputs/demo-model.h5" \
  --input "$root/inputs/prompts-text.jsonl" --output "$out" --tp 2
echo "demo: $(wc -l <"$out") results in $out"
