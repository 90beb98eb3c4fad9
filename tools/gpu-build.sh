#!/usr/bin/env bash
# On the GPU machine (.gpu-kit carried), from the checkout root: sets up the
# kit's environment, prints the GPU, then configures and builds build-gpu for
# sm_90a (every target, or the ones named), logs in $OUT. Sourced by the gpu-*
# scripts, so the environment stays set and a failed build ends the caller.
#   source tools/gpu-build.sh [TARGET...]
OUT=${OUT:-out}
mkdir -p "$OUT"
source .gpu-kit/env.sh
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
# Roofline ceilings of the card it got (../shared/gpu/README.md), for bench's
# options; bench's defaults are the H200's.
gpu_ceilings=()
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100 &&
  gpu_ceilings=(--hbm-gbs 3031 --peak-tflops 796)
gpu_build_t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DBoost_DIR="$BOOST_KIT_DIR" -DTPINFER_CUDA=ON >"$OUT/configure.log" 2>&1 ||
  { tail -30 "$OUT/configure.log"; exit 1; }
gpu_build_targets=()
for t in "$@"; do gpu_build_targets+=(--target "$t"); done
cmake --build build-gpu -j 16 "${gpu_build_targets[@]}" >"$OUT/build.log" 2>&1 ||
  { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - gpu_build_t0 )) s"
