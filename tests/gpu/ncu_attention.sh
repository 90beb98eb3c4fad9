#!/usr/bin/env bash
# On the GPU machine (Firecracker kinds, where ncu reads counters), from the
# checkout root with .gpu-kit carried: builds the benchmark and profiles one
# launch of the decode and of the prefill attention kernel (Llama-3-8B shapes:
# 64 x 1024 decode, 2048-token prefill). Full reports in $OUT; key lines printed.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
source .gpu-kit/env.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DBoost_DIR="$BOOST_KIT_DIR" -DTPINFER_CUDA=ON >"$OUT/cfg.log" 2>&1 &&
  cmake --build build-gpu -j 16 --target tpinfer_gpu_bench >"$OUT/build.log" 2>&1 ||
  { tail -20 "$OUT/build.log"; exit 1; }
ncu_run() {  # kernel regex, report name
  ncu --clock-control none --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \
    --section SchedulerStats -k "regex:$1" --launch-skip 3 --launch-count 1 \
    ./build-gpu/tests/tpinfer_gpu_bench attention >"$OUT/$2.log" 2>&1
}
ncu_run attn_decode_kernel ncu_decode
ncu_run attn_prefill_kernel ncu_prefill
keys="attn_|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Occupancy|Block Limit"
keys+="|Registers Per|Dynamic Shared|Grid Size|Issued Warp Per|No Eligible|L2 Hit|Eligible Warps"
keys+="|Active Warps|stalled"
for f in ncu_decode ncu_prefill; do
  echo "== $f"
  grep -E "$keys" "$OUT/$f.log" | sed 's/  */ /g' | head -45
done
