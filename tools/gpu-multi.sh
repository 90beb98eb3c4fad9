#!/usr/bin/env bash
# On a machine of several GPUs (kinds nvidia-h200-x2 / -x4 / -x8, .gpu-kit
# carried; its env.sh keeps NVLink multicast off, NCCL_NVLS_ENABLE=0): issue 11's
# measurements in one call, logs in $OUT. Not yet run anywhere (no such machine
# has been lent); written so that the first call that gets one measures it all.
#   bash tools/gpu-multi.sh
# 1. gpu tests with one GPU a rank: TP=2, 4 (and 8) over NCCL (collectives, logits
#    against TP=1), with and without the own IPC all-reduce; whole jobs; kill and resume.
# 2. all-reduce latency and bandwidth, NCCL against the own kernel, 4 KB - 64 MB,
#    at 2, 4 and 8 ranks (tpinfer_allreduce_bench).
# 3. tpinfer bench for Llama-3-8B shapes at TP = 1, 2, 4, 8 (batch-1 and batch-64
#    decode, offline 1000/1000 with the fp8 cache) with and without the own
#    all-reduce, and for Llama-3-70B shapes (random weights) at TP = 2, 4, 8.
# 4. DP layouts with `tpinfer run` (bench runs one replica): a random Llama-3-8B
#    weight file, 512 requests of 1000/200 tokens, DP = 1, 2, 4, 8 at TP=1 and
#    DP x TP = 2 x 2, 4 x 2; generated tokens/s from each run's summary line.
# All of it takes longer than one 10-minute call: STAGES picks what this call
# runs (comma list of tests, allreduce, bench8b, bench70b, dp; default all).
# Env: STAGES, BENCH_REPEATS (5), AR_KB (own all-reduce threshold, 512).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
source tools/gpu-build.sh tpinfer tpinfer_gpu_tests tpinfer_allreduce_bench
gpus=$(nvidia-smi -L | wc -l)
echo "== $gpus GPUs; NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset}"
mpi=(mpirun --allow-run-as-root --bind-to none)
stages=${STAGES:-tests,allreduce,bench8b,bench70b,dp}
stage() { [[ ",$stages," == *",$1,"* ]]; }

if stage tests; then
  (cd build-gpu && timeout -k 10 240 ctest -R "gpu_tp2|gpu_tp4|gpu_jobs|gpu_faults" \
    --output-on-failure >"$OUT/multi_tests.log" 2>&1)
  echo "gpu tests: exit $?"
  if [ "$gpus" -ge 8 ]; then  # TP=8 over NCCL against TP=1 (configs with 8 heads)
    timeout 120 "${mpi[@]}" -np 8 build-gpu/tests/tpinfer_gpu_tests \
      --gtest_filter='*CudaTensorParallel*:*IpcAllReduce*' >>"$OUT/multi_tests.log" 2>&1
    echo "TP=8 tests: exit $?"
  fi
  grep -E "tests passed|Passed|Failed|\[  (PASSED|FAILED|SKIPPED) " "$OUT/multi_tests.log" |
    sort | uniq -c | head -30
fi

for np in 2 4 8; do
  stage allreduce && [ "$np" -le "$gpus" ] || continue
  echo "== all-reduce, $np ranks"
  timeout 120 "${mpi[@]}" -np "$np" build-gpu/tests/tpinfer_allreduce_bench 2>&1 |
    tee "$OUT/allreduce_np$np.log"
done

bench() {  # CONFIG TP SCENARIOS [extra options...]
  local config=$1 tp=$2 scenarios=$3
  shift 3
  timeout 300 "${mpi[@]}" -np "$tp" build-gpu/tpinfer bench --model-config "$config" \
    --random-weights --tp "$tp" --scenarios "$scenarios" --fixed 1000/1000 \
    --repeats "${BENCH_REPEATS:-5}" --offline-repeats 1 "$@" 2>&1 |
    grep -E "^(tpinfer bench|decode|prefill|offline)"
}
for tp in 1 2 4 8; do
  stage bench8b && [ "$tp" -le "$gpus" ] || continue
  echo "== Llama-3-8B shapes, TP=$tp (NCCL)"
  bench tools/configs/llama-3-8b.json "$tp" decode1,decode64 | tee -a "$OUT/bench_8b.log"
  bench tools/configs/llama-3-8b.json "$tp" offline --kv-cache-dtype fp8 | tee -a "$OUT/bench_8b.log"
  if [ "$tp" -gt 1 ]; then
    echo "== Llama-3-8B shapes, TP=$tp, own all-reduce up to ${AR_KB:-512} KiB"
    bench tools/configs/llama-3-8b.json "$tp" decode1,decode64 \
      --custom-all-reduce-kb "${AR_KB:-512}" | tee -a "$OUT/bench_8b.log"
  fi
done
for tp in 2 4 8; do
  stage bench70b && [ "$tp" -le "$gpus" ] || continue
  echo "== Llama-3-70B shapes, TP=$tp"
  bench tools/configs/llama-3-70b.json "$tp" decode1,decode64 | tee -a "$OUT/bench_70b.log"
done

stage dp || exit 0
echo "== DP layouts (tpinfer run), Llama-3-8B shapes, 512 x 1000/200"
build-gpu/tpinfer make-model --config tools/configs/llama-3-8b.json --output /tmp/m8b.h5 \
  --dtype bfloat16 >/dev/null
python3 tools/make_workload.py --n 512 --isl 1000 --osl 200 --seed 1 >/tmp/dp.jsonl
for layout in 1x1 2x1 4x1 8x1 2x2 4x2; do
  dp=${layout%x*} tp=${layout#*x}
  np=$((dp * tp))
  [ "$np" -le "$gpus" ] || continue
  rm -f /tmp/dp_out.jsonl
  echo -n "dp $dp x tp $tp: "
  timeout 300 "${mpi[@]}" -np "$np" build-gpu/tpinfer run --model /tmp/m8b.h5 --input /tmp/dp.jsonl \
    --output /tmp/dp_out.jsonl --tp "$tp" 2>&1 | grep -oE "[0-9.]+ generated tokens/s" |
    tee -a "$OUT/dp.log"
done
