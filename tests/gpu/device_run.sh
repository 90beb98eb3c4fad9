#!/usr/bin/env bash
# On the GPU machine, from the checkout root, with .gpu-kit carried: builds the
# GPU tests and benchmark, runs them, and leaves full logs in $OUT (or ./out).
#   bash tests/gpu/device_run.sh [tests|tp2|bench]...   (default: all three)
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
source .gpu-kit/env.sh
what=("$@")
[ ${#what[@]} -eq 0 ] && what=(tests tp2 bench)

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
extra=()
if ! ls /usr/include/nccl.h /usr/local/cuda/include/nccl.h >/dev/null 2>&1; then
  inc=$(find / -name nccl.h -path '*include*' 2>/dev/null | head -1)
  [ -n "$inc" ] && extra+=("-DNCCL_ROOT=$(dirname "$(dirname "$inc")")")
fi
if ! cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DBoost_DIR="$BOOST_KIT_DIR" -DTPINFER_CUDA=ON "${extra[@]}" >"$OUT/configure.log" 2>&1; then
  tail -30 "$OUT/configure.log"; exit 1
fi
grep "CUDA backend" "$OUT/configure.log"
t0=$(date +%s)
if ! cmake --build build-gpu -j 16 --target tpinfer_gpu_tests tpinfer_gpu_bench \
    >"$OUT/build.log" 2>&1; then
  grep -E "error|Error" -A3 "$OUT/build.log" | head -60; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s; warnings: $(grep -c warning "$OUT/build.log")"

rc=0
for w in "${what[@]}"; do
  case $w in
    tests)
      ./build-gpu/tests/tpinfer_gpu_tests --gtest_filter=-*CudaTensorParallel* \
        >"$OUT/gpu_tests.log" 2>&1 || rc=1
      grep -E "^\[  FAILED|Failure|error:|logits|PASSED|FAILED TEST|tests ran" \
        "$OUT/gpu_tests.log" | head -80 ;;
    tp2)
      mpirun --oversubscribe -np 2 ./build-gpu/tests/tpinfer_gpu_tests \
        --gtest_filter=*CudaTensorParallel* >"$OUT/gpu_tp2.log" 2>&1 || rc=1
      grep -E "^\[  FAILED|Failure|logits|PASSED|FAILED TEST|tests ran|SKIPPED \]" \
        "$OUT/gpu_tp2.log" | head -40 ;;
    bench)
      ./build-gpu/tests/tpinfer_gpu_bench >"$OUT/bench.log" 2>&1 || rc=1
      cat "$OUT/bench.log" ;;
  esac
done
exit $rc
