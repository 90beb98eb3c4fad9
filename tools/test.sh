#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs every test (unit, MPI with
# 2 and 4 ranks, whole jobs including the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
source tools/mpirun-env.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
