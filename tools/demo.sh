#!/usr/bin/env bash
# Builds tpinfer and runs the demo job (2 MPI ranks, cpu backend when there is
# no GPU). Results: out/demo.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
bash tools/run-demo.sh
head -n 3 out/demo.jsonl
