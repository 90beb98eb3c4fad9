#!/usr/bin/env bash
# Installs missing dependencies and builds everything into build/ (binary: build/tpinfer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$(nproc)"
