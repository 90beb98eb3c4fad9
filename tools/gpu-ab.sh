#!/usr/bin/env bash
# On the GPU machine (.gpu-kit carried), from the checkout root: an A/B of two
# sets of `tpinfer bench` options in one command, run A B A B ... so that drift
# (clocks, temperature) falls on both; the gpu tests (all but the 47 s kill-and-
# resume one) first, so a broken B shows before its timings.
#   bash tools/gpu-ab.sh "OPTIONS_A" "OPTIONS_B" [SCENARIOS] [CONFIG.json]
#   e.g. bash tools/gpu-ab.sh "--cuda-pdl off" "--cuda-pdl on" decode1,decode64
# Env: ROUNDS (2), REPEATS (5), FIXED (offline ISL/OSL), SKIP_TESTS=1.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
a=$1 b=$2
scenarios=${3:-decode1,decode64}
config=${4:-tools/configs/llama-3-8b.json}
source tools/gpu-build.sh tpinfer tpinfer_gpu_tests
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  (cd build-gpu && timeout -k 5 200 ctest -R "gpu_ops|gpu_tp2|gpu_tp4|gpu_jobs" --output-on-failure \
    >"$OUT/gpu_tests.log" 2>&1)
  echo "gpu tests: exit $?"
  grep -E "Test +#|tests passed|FAILED|cuda_pdl|differ" "$OUT/gpu_tests.log" | head -20
fi
for round in $(seq "${ROUNDS:-2}"); do
  for side in A B; do
    opts=$a
    [ $side = B ] && opts=$b
    echo "== round $round, $side: $opts"
    # shellcheck disable=SC2086
    ./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios "$scenarios" \
      --fixed "${FIXED:-1000/1000}" --repeats "${REPEATS:-5}" --offline-repeats 1 \
      "${gpu_ceilings[@]}" $opts 2>&1 | tee -a "$OUT/ab_$side.log"
  done
done
