#!/usr/bin/env bash
# On the GPU machine (kind nvidia-h200, .gpu-kit carried), from the checkout
# root: where the offline 1000/1000 decode step's time goes. Builds tpinfer and
# the op benchmark, times decode attention at the offline shapes (256 sequences
# x 1000-2000 cached tokens), whole graph-replayed decode steps at batch 256 at
# those contexts, and the offline run itself with its step profile. Runs the
# gpu tests of recent changes first (attention, RoPE, model, graphs; TP=2).
#   bash tools/gpu-decode-profile.sh [CONFIG.json]
# Env: EXTRA (more tpinfer bench options, e.g. an A/B flag), SCENARIOS and
# FP8_SCENARIOS (of the bf16 and the fp8 KV cache runs), SKIP_ATTENTION=1.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
config=${1:-tools/configs/llama-3-8b.json}
source tools/gpu-build.sh tpinfer tpinfer_gpu_bench tpinfer_gpu_tests
echo "== gpu tests of what changed: attention (bf16, fp8), rope, model, graphs"
timeout 150 ./build-gpu/tests/tpinfer_gpu_tests --gtest_filter='*Attention*:*Rope*:*CudaModel*:*CudaGraphs*:CudaBatchPlan*' \
  >"$OUT/changed_tests.log" 2>&1
echo "gpu tests: exit $?"
grep -E "^\[  (PASSED|FAILED) |FAILED|tests ran" "$OUT/changed_tests.log" | head -20
echo "== TP=2 on one GPU: collectives (MPI and the own IPC all-reduce), logits"
(cd build-gpu && timeout 180 ctest -R gpu_tp2 --output-on-failure >"$OUT/tp2_tests.log" 2>&1)
echo "gpu_tp2: exit $?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED" "$OUT/tp2_tests.log" | sort | uniq -c | head -20
if [ "${SKIP_ATTENTION:-0}" != 1 ]; then
  echo "== decode attention (tpinfer_gpu_bench attention)"
  ./build-gpu/tests/tpinfer_gpu_bench attention 2>&1 | tee "$OUT/attention.log"
fi
echo "== tpinfer bench ${EXTRA:-}"
# shellcheck disable=SC2086
./build-gpu/tpinfer bench --model-config "$config" --random-weights \
  --scenarios "${SCENARIOS:-decode256@1000,decode256@1900,offline}" --fixed 1000/1000 \
  --repeats 1 --offline-repeats 1 --step-profile "${gpu_ceilings[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/bench.log"
echo "== tpinfer bench, fp8 KV cache"
./build-gpu/tpinfer bench --model-config "$config" --random-weights \
  --scenarios "${FP8_SCENARIOS:-decode256@1900,offline}" \
  --fixed 1000/1000 --repeats 1 --offline-repeats 1 --step-profile --kv-cache-dtype fp8 "${gpu_ceilings[@]}" \
  2>&1 | tee "$OUT/bench_fp8.log"
