#!/usr/bin/env bash
# On the GPU machine (kind nvidia-h200, with .gpu-kit carried), from the checkout
# root: builds tpinfer, runs the gpu tests, then `tpinfer bench` and the
# transformers peer (tools/hf_baseline.py) on the same model config and the same
# workloads, one after the other in this one command. Logs and JSON go to $OUT.
#   bash tools/gpu-bench.sh [CONFIG.json] [SCENARIOS]
# SCENARIOS: comma list of decode1,decode64,prefill2048,offline (default: all).
# Env: TESTS_TIMEOUT (seconds for ctest -L gpu, 300), FIXED (ISL/OSL list), REQUESTS, REPEATS, OFFLINE_REPEATS, SKIP_TESTS=1, SKIP_PEER=1,
# FP8=0 (skip the offline runs with the fp8 KV cache),
# PEER_SCENARIOS and PEER_FIXED (the peer's scenarios and shapes when they differ: all of it
# takes more than one 10-minute call, the peer's 1000/1000 alone ~4 minutes, so e.g.
# PEER_FIXED=128/128,2048/128 here and, in a second call,
# SKIP_TESTS=1 FP8=0 PEER_MAX_BATCH=128 FIXED=1000/1000 bash tools/gpu-bench.sh CONFIG offline),
# PEER_MAX_BATCH (the peer's first batch try; it halves on out-of-memory, 256).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
config=${1:-tools/configs/llama-3-8b.json}
scenarios=${2:-decode1,decode64,prefill2048,offline}
fixed=${FIXED:-128/128,1000/1000,2048/128}
requests=${REQUESTS:-256}
source tools/gpu-build.sh

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # Bounded, so that a hung test leaves the call time for the benchmark.
  (cd build-gpu && timeout -k 10 "${TESTS_TIMEOUT:-300}" ctest -L gpu --output-on-failure \
    >"$OUT/gpu_tests.log" 2>&1)
  echo "gpu tests: exit $?"
  grep -E "tests passed|Passed|Failed|FAILED|ok:|FAIL|identical" "$OUT/gpu_tests.log" | head -40
fi

# The mixed workload both engines run.
python3 tools/make_workload.py --n "$requests" --isl 64-2048 --osl 32-512 --seed 0 \
  >"$OUT/mixed.jsonl"
workload=()
[[ $scenarios == *offline* ]] && workload=(--workload "$OUT/mixed.jsonl")

echo "== tpinfer bench"
./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios "$scenarios" \
  --fixed "$fixed" --requests "$requests" --repeats "${REPEATS:-5}" \
  --offline-repeats "${OFFLINE_REPEATS:-1}" "${workload[@]}" "${gpu_ceilings[@]}" --step-profile --json "$OUT/tpinfer.json" \
  2>&1 | tee "$OUT/tpinfer.log"

if [ "${FP8:-1}" = 1 ] && [[ $scenarios == *offline* ]]; then
  # The same offline workloads with the KV cache in fp8 (half the bytes a decode step reads).
  echo "== tpinfer bench, --kv-cache-dtype fp8"
  ./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios offline \
    --fixed "$fixed" --requests "$requests" --offline-repeats "${OFFLINE_REPEATS:-1}" \
    "${workload[@]}" "${gpu_ceilings[@]}" --step-profile --kv-cache-dtype fp8 --json "$OUT/tpinfer_fp8.json" \
    2>&1 | tee "$OUT/tpinfer_fp8.log"
fi

if [ "${SKIP_PEER:-0}" != 1 ]; then
  echo "== transformers (static cache + torch.compile)"
  PYTHONUNBUFFERED=1 python3 tools/hf_baseline.py --model-config "$config" \
    --scenarios "${PEER_SCENARIOS:-$scenarios}" --fixed "${PEER_FIXED:-$fixed}" \
    --requests "$requests" --max-batch "${PEER_MAX_BATCH:-256}" \
    --repeats "${REPEATS:-5}" --offline-repeats "${OFFLINE_REPEATS:-1}" "${workload[@]}" \
    --json "$OUT/hf.json" 2>&1 | grep --line-buffered -v Warning | tee "$OUT/hf.log"
fi
rm -f "$OUT/mixed.jsonl"  # large; regenerated from the seed
