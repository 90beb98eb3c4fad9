#!/usr/bin/env bash
# The one entry point for the GPU machine (docs/GPU_MACHINE.md): sets up the
# kit, builds build-gpu (the only place that configures CMake for the GPU) and
# runs one question's tests and measurements in one command, logs in $OUT.
# `tools/gpu.sh --help` lists the subcommands and their environment knobs.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

usage() {
  cat <<'EOF'
usage: tools/gpu.sh SUBCOMMAND [ARGS...]     (on the GPU machine: docs/GPU_MACHINE.md)

Each subcommand sources tools/gpu-kit-env.sh (the kit: tools/make-gpu-kit.sh, carried
as .gpu-kit), prints the GPU, configures build-gpu (Release, Ninja, sm_90a, the kit's
Boost) and builds what it needs, then runs. Logs go to $OUT. Paths are relative to the
checkout root. CONFIG defaults to tools/configs/llama-3-8b.json. On an H100, bench runs
get that card's ceilings (--hbm-gbs 3031 --peak-tflops 796); bench's defaults are the H200's.

  build [TARGET...]        configure and build build-gpu (every target, or those named)
  test [CTEST-ARGS...]     ctest -L gpu, or ctest with the arguments given (e.g. -R gpu_tp2);
                           exits with ctest's status
  bench [CONFIG] [SCENARIOS]
                           the gpu tests, then `tpinfer bench` (bf16, then fp8 KV cache) and
                           the transformers peer (tools/hf_baseline.py) on the same workloads;
                           SCENARIOS: comma list of decode1,decode64,prefill2048,offline (all)
  det [CONFIG]             --deterministic: its gpu tests (ops, schedules, jobs, gpu_faults),
                           then its cost (decode1, decode64, both at long contexts too, mixed,
                           1000/1000) against the default mode
  table OLD_TGZ [CONFIG]   issue 24's rows (decode1, decode64, prefill2048, 128/128, 1000/1000,
                           mixed, sharegpt, 1000/1000 fp8 KV) for this tree and OLD_TGZ's
                           revision, built side by side; NEW_OPTS: options for this tree only
  oldbuild OLD_TGZ         only OLD_TGZ's tpinfer (in /tmp/abtree/build; table reuses it)
  abtree OLD_TGZ [SCENARIOS] [CONFIG]
                           the gpu tests, then bench of this tree and of an earlier revision
                           (OLD_TGZ: git archive --prefix=old/ REV -o .oldtree/old.tgz, carried)
                           alternately; SCENARIOS: decode1,decode64,offline; FIXED (128/128)
  checks                   chat prompts vs transformers' apply_chat_template and the tokenizer
                           vs the Rust tokenizers (ids, MB/s) on .cache/tokenizers (or a carried
                           .cache/chat-tok.tar.xz): tables for docs/HF_CHECKS.md
  ab OPTIONS_A OPTIONS_B [SCENARIOS] [CONFIG]
                           A/B of two sets of bench options, run A B A B ... so drift falls on
                           both, after the gpu tests (all but gpu_faults); SCENARIOS:
                           decode1,decode64
  prefix [CONFIG]          the prefix cache: its gpu test, then bench of the fewshot,
                           system-prompt, multiturn and mixed workloads, cache off and on
  steps [CONFIG]           where the offline runs' step time goes: bench of 128/128 (FIXED),
                           mixed and sharegpt with --step-profile, then with --op-profile
  profile [CONFIG]         where the offline 1000/1000 decode step's time goes: gpu tests of
                           attention, RoPE, model, graphs and gpu_tp2, decode attention at the
                           offline shapes, decode256@1000/@1900 and offline with --step-profile
                           (bf16, then fp8 KV cache)
  multi                    several GPUs (kinds -x2/-x4/-x8): TP tests over NCCL, all-reduce
                           NCCL vs own, bench at TP 1-8 (8B and 70B shapes), DP layouts
  hf                       against Hugging Face: trains the demo model, tokenizer ids, CI
                           fixtures, logits vs transformers, the trained demo; needs
                           .cache/brown.txt and .cache/tokenizers carried (docs/HF_CHECKS.md)
  ncu                      Nsight Compute on one decode and one prefill attention launch
  opbench [GROUP]          tpinfer_gpu_bench op timings (linear, attention, rows; all)

Environment (default):
  OUT             where logs and results go (out)
  GPU_KIT         the kit folder (.gpu-kit); none: Boost is installed
  GPU_KIT_ROOT    where the kit is unpacked (/opt/kit)
  JOBS            build parallelism (16)
  TESTS_TIMEOUT   test, bench: seconds for the gpu tests (300)
  SKIP_TESTS=1    bench, ab, abtree, prefix: no gpu tests
  FIXED           bench, ab: ISL/OSL list (bench 128/128,1000/1000,2048/128; ab 1000/1000)
  REPEATS         bench, ab: decode/prefill repeats (5)
  bench:   REQUESTS (256), OFFLINE_REPEATS (1), FP8=0 (no fp8 KV cache runs), SKIP_PEER=1,
           PEER_SCENARIOS, PEER_FIXED (the peer's, when they differ: its 1000/1000 alone
           takes ~4 minutes), PEER_MAX_BATCH (its first batch try, halved on OOM; 256)
  ab:      ROUNDS (2)
  prefix:  WORKLOADS (fewshot system-prompt multiturn mixed), ROUNDS (1), SKIP_TESTS=1
  steps:   FIXED (128/128), EXTRA (more bench options)
  profile: EXTRA (more bench options), SCENARIOS (decode256@1000,decode256@1900,offline),
           FP8_SCENARIOS (decode256@1900,offline), SKIP_ATTENTION=1
  multi:   STAGES (comma list of tests,allreduce,bench8b,bench70b,dp; all), BENCH_REPEATS (5),
           AR_KB (own all-reduce threshold, 512)
  hf:      TRAIN_SECONDS (150), SKIP_TRAIN=1
EOF
}

die() {  # usage or set-up problem: one line, exit 2
  echo "gpu.sh: $*" >&2
  exit 2
}

OUT=${OUT:-out}

# The kit, the GPU and its ceilings. Sets gpu_ceilings (bench options).
gpu_setup() {
  # shellcheck source=tools/gpu-kit-env.sh
  source tools/gpu-kit-env.sh || exit
  if ! command -v nvidia-smi >/dev/null; then
    die "nvidia-smi not found: run this on the GPU machine (docs/GPU_MACHINE.md)"
  fi
  mkdir -p "$OUT" || exit 1
  OUT=$(cd "$OUT" && pwd)  # the tests log from inside build-gpu
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
  # Roofline ceilings of the card it got (docs/GPU_MACHINE.md).
  gpu_ceilings=()
  if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100; then
    gpu_ceilings=(--hbm-gbs 3031 --peak-tflops 796)
  fi
}

# Configures build-gpu and builds TARGETs (every target when none); logs in
# $build_logs ($OUT unless set). A failed configure or build ends the command.
gpu_build() {  # [TARGET...]
  local logs=${build_logs:-$OUT} t0 targets=() boost=()
  t0=$(date +%s)
  [ -n "${BOOST_KIT_DIR:-}" ] && boost=(-DBoost_DIR="$BOOST_KIT_DIR")
  if ! cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
      "${boost[@]}" -DTPINFER_CUDA=ON >"$logs/configure.log" 2>&1; then
    tail -30 "$logs/configure.log"
    exit 1
  fi
  for t in "$@"; do targets+=(--target "$t"); done
  if ! cmake --build build-gpu -j "${JOBS:-16}" "${targets[@]}" >"$logs/build.log" 2>&1; then
    grep -E "error" -A3 "$logs/build.log" | head -60
    exit 1
  fi
  gpu_build_s=$(($(date +%s) - t0))
  echo "build: $gpu_build_s s; warnings: $(grep -c "warning:" "$logs/build.log")"
}

# ctest in build-gpu, bounded so that a hung test leaves the call time for
# what follows; prints and returns its exit status.
gpu_ctest() {  # LOG TIMEOUT CTEST-ARGS...
  local log=$1 limit=$2 rc
  shift 2
  (cd build-gpu && timeout -k 10 "$limit" ctest "$@" --output-on-failure >"$log" 2>&1)
  rc=$?
  echo "gpu tests: exit $rc"
  return $rc
}

# The gpu tests before a measurement, unless SKIP_TESTS=1: ctest with
# CTEST-ARGS within TIMEOUT seconds, then the log's lines matching PATTERN.
gpu_tests_first() {  # TIMEOUT PATTERN CTEST-ARGS...
  [ "${SKIP_TESTS:-0}" = 1 ] && return
  local limit=$1 pattern=$2
  shift 2
  gpu_ctest "$OUT/gpu_tests.log" "$limit" "$@"
  grep -E "$pattern" "$OUT/gpu_tests.log" | head -40
}

config_arg() {  # NAME PATH: PATH must be a file
  [ -f "$2" ] || die "$1: model config '$2' does not exist (paths are relative to the checkout root)"
}

args_at_most() {  # SUBCOMMAND MAX "$@"
  local sub=$1 max=$2
  shift 2
  [ $# -le "$max" ] && return
  [ "$max" = 0 ] && die "$sub takes no arguments, got $# (tools/gpu.sh --help)"
  die "$sub takes at most $max arguments, got $# (tools/gpu.sh --help)"
}

cmd_build() {
  gpu_setup
  gpu_build "$@"
}

cmd_test() {
  local args=("$@") rc
  [ $# -eq 0 ] && args=(-L gpu)
  gpu_setup
  gpu_build
  gpu_ctest "$OUT/gpu_tests.log" "${TESTS_TIMEOUT:-300}" "${args[@]}"
  rc=$?
  grep -E "tests passed|Passed|Failed|FAILED|ok:|FAIL|identical|differ" "$OUT/gpu_tests.log" | head -40
  exit $rc
}

# tpinfer bench and the transformers peer on the same model config and workloads.
cmd_bench() {
  args_at_most bench 2 "$@"
  local config=${1:-tools/configs/llama-3-8b.json}
  local scenarios=${2:-decode1,decode64,prefill2048,offline}
  local fixed=${FIXED:-128/128,1000/1000,2048/128} requests=${REQUESTS:-256}
  config_arg bench "$config"
  gpu_setup
  gpu_build
  gpu_tests_first "${TESTS_TIMEOUT:-300}" "tests passed|Passed|Failed|FAILED|ok:|FAIL|identical" \
    -L gpu

  # The mixed workload both engines run.
  python3 tools/make_workload.py --n "$requests" --isl 64-2048 --osl 32-512 --seed 0 \
    >"$OUT/mixed.jsonl"
  local workload=()
  [[ $scenarios == *offline* ]] && workload=(--workload "$OUT/mixed.jsonl")

  echo "== tpinfer bench"
  ./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios "$scenarios" \
    --fixed "$fixed" --requests "$requests" --repeats "${REPEATS:-5}" \
    --offline-repeats "${OFFLINE_REPEATS:-1}" "${workload[@]}" "${gpu_ceilings[@]}" \
    --step-profile --json "$OUT/tpinfer.json" 2>&1 | tee "$OUT/tpinfer.log"

  if [ "${FP8:-1}" = 1 ] && [[ $scenarios == *offline* ]]; then
    # The same offline workloads with the KV cache in fp8 (half the bytes a decode step reads).
    echo "== tpinfer bench, --kv-cache-dtype fp8"
    ./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios offline \
      --fixed "$fixed" --requests "$requests" --offline-repeats "${OFFLINE_REPEATS:-1}" \
      "${workload[@]}" "${gpu_ceilings[@]}" --step-profile --kv-cache-dtype fp8 \
      --json "$OUT/tpinfer_fp8.json" 2>&1 | tee "$OUT/tpinfer_fp8.log"
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
}

# A/B of two sets of bench options; the gpu tests first (all but the 47 s
# kill-and-resume one), so a broken B shows before its timings.
cmd_ab() {
  [ $# -ge 2 ] || die "ab needs OPTIONS_A and OPTIONS_B, e.g. ab \"--cuda-pdl off\" \"--cuda-pdl on\""
  args_at_most ab 4 "$@"
  local a=$1 b=$2 scenarios=${3:-decode1,decode64} config=${4:-tools/configs/llama-3-8b.json}
  local round side opts
  config_arg ab "$config"
  gpu_setup
  gpu_build tpinfer tpinfer_gpu_tests
  gpu_tests_first 200 "Test +#|tests passed|FAILED|cuda_pdl|differ" \
    -R "gpu_ops|gpu_tp2|gpu_tp4|gpu_jobs"
  for round in $(seq "${ROUNDS:-2}"); do
    for side in A B; do
      opts=$a
      [ $side = B ] && opts=$b
      echo "== round $round, $side: $opts"
      # shellcheck disable=SC2086  # the option sets split into words
      ./build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios "$scenarios" \
        --fixed "${FIXED:-1000/1000}" --repeats "${REPEATS:-5}" --offline-repeats 1 \
        "${gpu_ceilings[@]}" $opts 2>&1 | tee -a "$OUT/ab_$side.log"
    done
  done
}

# The binary of an earlier revision beside this tree's, in one call: the gpu
# tests of this tree, then bench of both alternately (new, old, new, old), so
# drift falls on both. OLD_TGZ: `git archive --prefix=old/ REV -o .oldtree/old.tgz`
# made on the workstation and carried (.oldtree is git-ignored).
cmd_abtree() {
  [ $# -ge 1 ] || die "abtree needs OLD_TGZ (git archive --prefix=old/ REV -o .oldtree/old.tgz)"
  args_at_most abtree 3 "$@"
  local tgz=$1 scenarios=${2:-decode1,decode64,offline} config=${3:-tools/configs/llama-3-8b.json}
  local round side bin
  [ -s "$tgz" ] || die "abtree: $tgz is not there (carry it)"
  config_arg abtree "$config"
  gpu_setup
  gpu_build
  gpu_tests_first "${TESTS_TIMEOUT:-300}" "Test +#|tests passed|FAILED" -L gpu
  OLD_JOBS=${JOBS:-16} old_tree_build "$tgz" || exit 1
  for round in $(seq "${ROUNDS:-2}"); do
    for side in new old; do
      bin=./build-gpu/tpinfer
      [ $side = old ] && bin=/tmp/abtree/build/tpinfer
      echo "== round $round, $side"
      "$bin" bench --model-config "$config" --random-weights --scenarios "$scenarios" \
        --fixed "${FIXED:-128/128}" --requests "${REQUESTS:-256}" --repeats "${REPEATS:-5}" \
        --offline-repeats 1 "${gpu_ceilings[@]}" 2>&1 | grep -vi progress | tee -a "$OUT/abtree_$side.log" |
        grep -E "decode|prefill|offline" | head -8
    done
  done
}

# Issue 24's table in one call: every bench row (batch-1 and batch-64 decode,
# 2048 prefill, offline 128/128 and 1000/1000, the mixed and sharegpt
# workloads, 1000/1000 with the fp8 KV cache) for this tree's binary and an
# earlier revision's (OLD_TGZ, as for abtree), both built side by side without
# tests; NEW_OPTS: bench options for this tree's binary only.
cmd_table() {
  [ $# -ge 1 ] || die "table needs OLD_TGZ (git archive --prefix=old/ REV -o .oldtree/old.tgz)"
  args_at_most table 2 "$@"
  local tgz=$1 config=${2:-tools/configs/llama-3-8b.json} side bin opts common
  [ -s "$tgz" ] || die "table: $tgz is not there (carry it)"
  config_arg table "$config"
  gpu_setup
  # The old binary may already be there from an earlier call on this machine
  # (old_tree_build, run beside other work); this tree's is build-gpu's.
  old_tree_build "$tgz" &
  JOBS=8 gpu_build tpinfer
  wait $! || exit 1
  python3 tools/make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 >/tmp/mixed.jsonl
  python3 tools/make_workload.py --kind sharegpt --seed 0 >/tmp/sharegpt.jsonl
  common=(--model-config "$config" --random-weights --requests 256 --repeats "${REPEATS:-3}"
    --offline-repeats 1 "${gpu_ceilings[@]}")
  for side in new old; do
    bin=./build-gpu/tpinfer opts=${NEW_OPTS:-}
    [ $side = old ] && bin=/tmp/abtree/build/tpinfer opts=""
    echo "== $side"
    # shellcheck disable=SC2086  # the options split into words
    timeout 150 "$bin" bench "${common[@]}" --scenarios decode1,decode64,prefill2048,offline \
      --fixed 128/128,1000/1000 --workload /tmp/mixed.jsonl --workload /tmp/sharegpt.jsonl $opts \
      >"$OUT/table_$side.log" 2>&1
    grep -vi progress "$OUT/table_$side.log" | grep -E "decode|prefill|offline|error" | head -14
    # shellcheck disable=SC2086
    timeout 50 "$bin" bench "${common[@]}" --scenarios offline --fixed 1000/1000 \
      --kv-cache-dtype fp8 $opts >"$OUT/table_fp8_$side.log" 2>&1
    grep -vi progress "$OUT/table_fp8_$side.log" | grep -E "offline|error" | head -4
  done
}

# Builds OLD_TGZ's tpinfer in /tmp/abtree/build (no tests), unless the same
# archive's binary is already there; logs in $OUT/old_build.log.
old_tree_build() {  # OLD_TGZ
  local tgz=$1 sum boost=()
  sum=$(md5sum <"$tgz")
  if [ -x /tmp/abtree/build/tpinfer ] && [ "$(cat /tmp/abtree/sum 2>/dev/null)" = "$sum" ]; then
    echo "old tree: built already"
    return 0
  fi
  rm -rf /tmp/abtree && mkdir -p /tmp/abtree && tar xzf "$tgz" -C /tmp/abtree || return 1
  [ -n "${BOOST_KIT_DIR:-}" ] && boost=(-DBoost_DIR="$BOOST_KIT_DIR")
  if ! { cmake -S /tmp/abtree/old -B /tmp/abtree/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES=90a "${boost[@]}" -DTPINFER_CUDA=ON -DBUILD_TESTING=OFF &&
      cmake --build /tmp/abtree/build -j "${OLD_JOBS:-8}" --target tpinfer; } >"$OUT/old_build.log" 2>&1; then
    grep -m5 error "$OUT/old_build.log"
    return 1
  fi
  echo "$sum" >/tmp/abtree/sum
  echo "old tree: built"
}

# --deterministic (issue 25): its gpu tests (ops and whole-model schedules,
# then the whole-job script, then gpu_faults, which runs under the mode), and
# its cost: bench of batch-1 and batch-64 decode (also at long contexts), the
# mixed workload and offline 1000/1000, the default mode and the mode, in one call.
cmd_det() {
  args_at_most det 1 "$@"
  local config=${1:-tools/configs/llama-3-8b.json} mode common
  config_arg det "$config"
  gpu_setup
  gpu_build tpinfer tpinfer_gpu_tests
  if [ "${SKIP_TESTS:-0}" != 1 ]; then
    timeout 150 build-gpu/tests/tpinfer_gpu_tests \
      --gtest_filter='*CudaDeterministic*:*CudaLinear*:*CudaModel*:*Attention*:CudaBatchPlan*' >"$OUT/det_gtest.log" 2>&1
    echo "deterministic gtests: exit $?"
    grep -E "^\[  (PASSED|FAILED) |FAILED|Failure|default  \]|logits   \]" "$OUT/det_gtest.log" | head -40
    gpu_ctest "$OUT/det_jobs.log" 500 -R "gpu_deterministic|gpu_faults"
    grep -E "ok:|FAIL|differ|tests passed" "$OUT/det_jobs.log" | head -40
  fi
  python3 tools/make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 >/tmp/mixed.jsonl
  # shellcheck disable=SC2054  # the commas are inside option values
  common=(--model-config "$config" --random-weights --requests 256 --repeats "${REPEATS:-3}"
    --offline-repeats 1 "${gpu_ceilings[@]}"
    --scenarios decode1,decode64,decode1@8000,decode64@2000,offline
    --fixed 1000/1000 --workload /tmp/mixed.jsonl)
  for mode in default deterministic; do
    echo "== bench: $mode"
    if [ $mode = default ]; then
      ./build-gpu/tpinfer bench "${common[@]}" >"$OUT/det_bench_$mode.log" 2>&1
    else
      ./build-gpu/tpinfer bench "${common[@]}" --deterministic >"$OUT/det_bench_$mode.log" 2>&1
    fi
    grep -vi progress "$OUT/det_bench_$mode.log" | grep -E "decode|offline|error" | head -8
  done
}

# Chat prompts against transformers' apply_chat_template, and the tokenizer
# against the Rust `tokenizers` (ids and encode MB/s), on the tokenizer folders
# in TOKENIZERS (default .cache/tokenizers; .cache/chat-tok.tar.xz is unpacked
# there when carried). Tables for docs/HF_CHECKS.md.
cmd_checks() {
  args_at_most checks 0 "$@"
  local dir=${TOKENIZERS:-.cache/tokenizers} names=() pairs=() n t
  gpu_setup
  # Carried subsets of .cache/tokenizers (docs/GPU_MACHINE.md): chat-tok has the
  # five chat templates, more-tok the other tokenizers.
  for t in .cache/chat-tok.tar.xz .cache/more-tok.tar.xz; do
    if [ -s "$t" ]; then mkdir -p "$dir" && tar xJf "$t" -C "$dir" || exit 1; fi
  done
  gpu_build tpinfer tokenizer_bench
  for n in llama3 llama3_1 qwen3 deepseek_v3 gemma3; do
    [ -s "$dir/$n/tokenizer_config.json" ] && names+=("$dir/$n")
  done
  for n in "$dir"/*/tokenizer.json; do pairs+=("$(basename "$(dirname "$n")")=$n"); done
  echo "== chat templates: tpinfer tokenize --chat vs apply_chat_template"
  python3 tools/chat_template_check.py --tpinfer build-gpu/tpinfer "${names[@]}" 2>&1 |
    tee "$OUT/chat_template_check.md"
  echo "== tokenizers: tpinfer vs the Rust tokenizers"
  python3 tools/tokenizer_compare.py --bench build-gpu/tests/tokenizer_bench "${pairs[@]}" 2>&1 |
    tee "$OUT/tokenizer_bench.md"
}

# The prefix cache's targets (docs/PERF.md): its gpu test, then bench of the
# fewshot, system-prompt, multiturn and mixed workloads (make_workload.py, seed
# 0) with the cache off and on, alternately, in one process each.
cmd_prefix() {
  args_at_most prefix 1 "$@"
  local config=${1:-tools/configs/llama-3-8b.json} r cache kind files=()
  config_arg CONFIG "$config"
  gpu_setup
  gpu_build tpinfer
  gpu_tests_first "${TESTS_TIMEOUT:-300}" "^ok:|FAIL|identical|done:" -R gpu_prefix_cache -V
  for kind in ${WORKLOADS:-fewshot system-prompt multiturn mixed}; do
    case $kind in
      mixed) python3 tools/make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 ;;
      *) python3 tools/make_workload.py --kind "$kind" --seed 0 ;;
    esac >"$OUT/$kind.jsonl" || die "make_workload.py --kind $kind failed"
    files+=(--workload "$OUT/$kind.jsonl")
  done
  for r in $(seq "${ROUNDS:-1}"); do
    for cache in off on; do
      echo "== round $r, prefix cache $cache"
      build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios offline \
        --fixed "" --offline-repeats 1 "${files[@]}" --prefix-cache "$cache" --step-profile \
        "${gpu_ceilings[@]}" --json "$OUT/prefix-$cache-$r.json" >"$OUT/prefix-$cache-$r.log" 2>&1
      grep -E "^offline|tok/s|prefix cache|error" "$OUT/prefix-$cache-$r.log"
    done
  done
}

# Where the offline runs' time goes (issue 24): bench of 128/128, the mixed
# and the sharegpt-like workloads with --step-profile (as they run: graphs on),
# then again with --op-profile (every op of every step timed on the device).
cmd_steps() {
  args_at_most steps 1 "$@"
  local config=${1:-tools/configs/llama-3-8b.json} pass
  config_arg CONFIG "$config"
  gpu_setup
  gpu_build tpinfer
  python3 tools/make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 >"$OUT/mixed.jsonl"
  python3 tools/make_workload.py --kind sharegpt --seed 0 >"$OUT/sharegpt.jsonl"
  for pass in step-profile op-profile; do
    echo "== bench --$pass ${EXTRA:-}"
    # shellcheck disable=SC2086  # EXTRA splits into options
    build-gpu/tpinfer bench --model-config "$config" --random-weights --scenarios offline \
      --fixed "${FIXED:-128/128}" --offline-repeats 1 --workload "$OUT/mixed.jsonl" \
      --workload "$OUT/sharegpt.jsonl" --"$pass" "${gpu_ceilings[@]}" ${EXTRA:-} \
      --json "$OUT/steps-$pass.json" 2>&1 | tee "$OUT/steps-$pass.log"
  done
}

# Where the offline 1000/1000 decode step's time goes: decode attention at the
# offline shapes (256 sequences x 1000-2000 cached tokens), whole graph-replayed
# decode steps at batch 256 at those contexts, and the offline run with its
# step profile; the gpu tests of those parts first.
cmd_profile() {
  args_at_most profile 1 "$@"
  local config=${1:-tools/configs/llama-3-8b.json}
  config_arg profile "$config"
  gpu_setup
  gpu_build tpinfer tpinfer_gpu_bench tpinfer_gpu_tests
  echo "== gpu tests of the decode step: attention (bf16, fp8), rope, model, graphs"
  timeout 150 ./build-gpu/tests/tpinfer_gpu_tests \
    --gtest_filter='*Attention*:*Rope*:*CudaModel*:*CudaGraphs*:CudaBatchPlan*' \
    >"$OUT/changed_tests.log" 2>&1
  echo "gpu tests: exit $?"
  grep -E "^\[  (PASSED|FAILED) |FAILED|tests ran" "$OUT/changed_tests.log" | head -20
  echo "== TP=2 on one GPU: collectives (MPI and the own IPC all-reduce), logits"
  gpu_ctest "$OUT/tp2_tests.log" 180 -R gpu_tp2 >/dev/null
  echo "gpu_tp2: exit $?"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED" "$OUT/tp2_tests.log" | sort | uniq -c | head -20
  if [ "${SKIP_ATTENTION:-0}" != 1 ]; then
    echo "== decode attention (tpinfer_gpu_bench attention)"
    ./build-gpu/tests/tpinfer_gpu_bench attention 2>&1 | tee "$OUT/attention.log"
  fi
  echo "== tpinfer bench ${EXTRA:-}"
  # shellcheck disable=SC2086  # EXTRA splits into options
  ./build-gpu/tpinfer bench --model-config "$config" --random-weights \
    --scenarios "${SCENARIOS:-decode256@1000,decode256@1900,offline}" --fixed 1000/1000 \
    --repeats 1 --offline-repeats 1 --step-profile "${gpu_ceilings[@]}" ${EXTRA:-} 2>&1 |
    tee "$OUT/bench.log"
  echo "== tpinfer bench, fp8 KV cache"
  ./build-gpu/tpinfer bench --model-config "$config" --random-weights \
    --scenarios "${FP8_SCENARIOS:-decode256@1900,offline}" --fixed 1000/1000 --repeats 1 \
    --offline-repeats 1 --step-profile --kv-cache-dtype fp8 "${gpu_ceilings[@]}" 2>&1 |
    tee "$OUT/bench_fp8.log"
}

# Issue 11's measurements on a machine of several GPUs (the kit's env keeps
# NVLink multicast off). Not yet run anywhere: no such machine has been lent.
# All of it takes longer than one 10-minute call: STAGES picks this call's part.
cmd_multi() {
  args_at_most multi 0 "$@"
  local stages=${STAGES:-tests,allreduce,bench8b,bench70b,dp} gpus np tp layout dp
  local s
  for s in ${stages//,/ }; do
    [[ ,tests,allreduce,bench8b,bench70b,dp, == *",$s,"* ]] ||
      die "multi: STAGES has '$s' (rule: a comma list of tests, allreduce, bench8b, bench70b, dp)"
  done
  gpu_setup
  gpu_build tpinfer tpinfer_gpu_tests tpinfer_allreduce_bench
  gpus=$(nvidia-smi -L | wc -l)
  echo "== $gpus GPUs; NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset}"
  local mpi=(mpirun --allow-run-as-root --bind-to none)
  stage() { [[ ",$stages," == *",$1,"* ]]; }

  # 1. gpu tests with one GPU a rank: TP=2, 4 (and 8) over NCCL (collectives,
  #    logits against TP=1), with and without the own IPC all-reduce; whole
  #    jobs; kill and resume.
  if stage tests; then
    gpu_ctest "$OUT/multi_tests.log" 240 -R "gpu_tp2|gpu_tp4|gpu_jobs|gpu_faults"
    if [ "$gpus" -ge 8 ]; then  # TP=8 over NCCL against TP=1 (configs with 8 heads)
      timeout 120 "${mpi[@]}" -np 8 build-gpu/tests/tpinfer_gpu_tests \
        --gtest_filter='*CudaTensorParallel*:*IpcAllReduce*' >>"$OUT/multi_tests.log" 2>&1
      echo "TP=8 tests: exit $?"
    fi
    grep -E "tests passed|Passed|Failed|\[  (PASSED|FAILED|SKIPPED) " "$OUT/multi_tests.log" |
      sort | uniq -c | head -30
  fi

  # 2. All-reduce latency and bandwidth, NCCL against the own kernel, 4 KB - 64 MB.
  for np in 2 4 8; do
    stage allreduce || continue
    [ "$np" -le "$gpus" ] || continue
    echo "== all-reduce, $np ranks"
    timeout 120 "${mpi[@]}" -np "$np" build-gpu/tests/tpinfer_allreduce_bench 2>&1 |
      tee "$OUT/allreduce_np$np.log"
  done

  # 3. bench at TP = 1, 2, 4, 8: batch-1 and batch-64 decode, offline 1000/1000
  #    with the fp8 cache, with and without the own all-reduce.
  multi_bench() {  # CONFIG TP SCENARIOS [OPTION...]
    local config=$1 tp=$2 scenarios=$3
    shift 3
    timeout 300 "${mpi[@]}" -np "$tp" build-gpu/tpinfer bench --model-config "$config" \
      --random-weights --tp "$tp" --scenarios "$scenarios" --fixed 1000/1000 \
      --repeats "${BENCH_REPEATS:-5}" --offline-repeats 1 "$@" 2>&1 |
      grep -E "^(tpinfer bench|decode|prefill|offline)"
  }
  for tp in 1 2 4 8; do
    stage bench8b || continue
    [ "$tp" -le "$gpus" ] || continue
    echo "== Llama-3-8B shapes, TP=$tp (NCCL)"
    multi_bench tools/configs/llama-3-8b.json "$tp" decode1,decode64 | tee -a "$OUT/bench_8b.log"
    multi_bench tools/configs/llama-3-8b.json "$tp" offline --kv-cache-dtype fp8 |
      tee -a "$OUT/bench_8b.log"
    if [ "$tp" -gt 1 ]; then
      echo "== Llama-3-8B shapes, TP=$tp, own all-reduce up to ${AR_KB:-512} KiB"
      multi_bench tools/configs/llama-3-8b.json "$tp" decode1,decode64 \
        --custom-all-reduce-kb "${AR_KB:-512}" | tee -a "$OUT/bench_8b.log"
    fi
  done
  for tp in 2 4 8; do
    stage bench70b || continue
    [ "$tp" -le "$gpus" ] || continue
    echo "== Llama-3-70B shapes, TP=$tp"
    multi_bench tools/configs/llama-3-70b.json "$tp" decode1,decode64 | tee -a "$OUT/bench_70b.log"
  done

  # 4. DP layouts with `tpinfer run` (bench runs one replica): 512 requests of
  #    1000/200 tokens on random Llama-3-8B weights; tokens/s from each summary.
  stage dp || return 0
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
}

# Everything that needs transformers or a GPU of docs/HF_CHECKS.md, in one go:
#   1. trains the demo model (tools/train_demo.py, in the background) while
#      tpinfer builds;
#   2. tokenizer ids from Hugging Face `tokenizers` over the hard strings
#      (tools/tokenizer_compare.py) and the C++ tokenizer tests against them;
#   3. the CI fixtures (tools/hf_compare.py --write-fixtures) and the C++
#      fixture and logits tests on them;
#   4. tools/hf_compare.py: cpu fp32 and cuda bf16 logits against transformers
#      at TP 1 and 2 on seeded models and on the trained demo model;
#   5. the trained model converted and run on inputs/prompts-text.jsonl.
# What comes back ($OUT, few files): demo-model.tar (the Hugging Face
# directory, to convert into inputs/ here), checks.tar.gz (paths relative to
# the repository root: tests/data/hf_fixtures/, tests/data/tokenizer/hf_*.json,
# out/hf-checks/ with logs, results and the demo's output), summary.txt.
# Carried with .gpu-kit: .cache/brown.txt and .cache/tokenizers (made here by
# tools/prepare_brown.py --fetch and tools/tokenizer_fixtures/fetch_tokenizers.sh).
cmd_hf() {
  args_at_most hf 0 "$@"
  local R=out/hf-checks  # everything small, packed into checks.tar.gz at the end
  local t0 f train_pid="" DEMO=/tmp/demo-model B=build-gpu/tpinfer T=tests/data/tokenizer
  local trained=()
  t0=$(date +%s)
  gpu_setup
  rm -rf "$R" && mkdir -p "$R"
  export PYTHONUNBUFFERED=1
  summary() { echo "$*" | tee -a "$R/summary.txt"; }
  # Packs what exists so far after every stage, so a call cut off at its time
  # limit still brings back the stages that finished.
  pack() {
    local paths=("$R") f
    [ -d tests/data/hf_fixtures ] && paths+=(tests/data/hf_fixtures)
    for f in tests/data/tokenizer/hf_*.json; do [ -e "$f" ] && paths+=("$f"); done
    tar czf "$OUT/checks.tar.gz" "${paths[@]}"
    cp "$R/summary.txt" "$OUT/summary.txt"
  }
  for f in .cache/brown.txt .cache/tokenizers/llama3/tokenizer.json; do
    [ -s "$f" ] || summary "missing $f (carry .cache/brown.txt and .cache/tokenizers)"
  done

  # 1. Training runs on the GPU while the build uses the CPUs.
  if [ "${SKIP_TRAIN:-0}" != 1 ]; then
    rm -rf "$DEMO"
    python3 tools/train_demo.py --text .cache/brown.txt --output "$DEMO" \
      --time-budget "${TRAIN_SECONDS:-150}" >"$R/train.log" 2>&1 &
    train_pid=$!
  fi
  build_logs=$R gpu_build
  echo "build: $gpu_build_s s" >>"$R/summary.txt"

  # 2. Tokenizers: expected ids from Hugging Face tokenizers, then the C++ tests on them.
  python3 tools/tokenizer_compare.py --out-dir "$T" \
    tiny_gpt2=$T/tiny_gpt2.tokenizer.json tiny_llama3=$T/tiny_llama3.tokenizer.json \
    tiny_llama2=$T/tiny_llama2.tokenizer.json gpt2=.cache/tokenizers/gpt2/tokenizer.json \
    llama3=.cache/tokenizers/llama3/tokenizer.json llama2=.cache/tokenizers/llama2/tokenizer.json \
    qwen3=.cache/tokenizers/qwen3/tokenizer.json \
    $(for n in llama3_1 gpt4o gptoss deepseek_v3 gemma3 mistral_nemo claude gemini gpt35turbo; do
        [ -s .cache/tokenizers/$n/tokenizer.json ] && echo "$n=.cache/tokenizers/$n/tokenizer.json"
      done) >"$R/tokenizer_compare.log" 2>&1
  summary "tokenizer_compare.py: exit $? ($(grep -c '' "$R/tokenizer_compare.log") lines, see tokenizer_compare.log)"
  TPINFER_TOKENIZER_DIR=$PWD/.cache/tokenizers build-gpu/tests/tpinfer_unit_tests \
    --gtest_filter='*Tokenizer*:*Nfc*' >"$R/tokenizer_tests.log" 2>&1
  summary "C++ tokenizer tests: exit $?; $(grep -E '^\[ hf ' "$R/tokenizer_tests.log" | sed 's/^\[ hf *\] //' | tr '\n' ';')"
  grep -E "PASSED|FAILED" "$R/tokenizer_tests.log" | tail -12 | tee -a "$R/summary.txt"
  pack

  # 3. CI fixtures, then the fixture and logits job tests (cpu backend).
  python3 tools/hf_compare.py --write-fixtures tests/data/hf_fixtures >"$R/fixtures.log" 2>&1
  summary "fixtures: exit $?; $(grep '^fixture' "$R/fixtures.log" | tr '\n' ';')"
  build-gpu/tests/tpinfer_job_tests --gtest_filter='HfFixtures*:Logits*' >"$R/job_tests.log" 2>&1
  summary "fixture + logits job tests: exit $?"
  grep -E "^\[ (hf|logits) |PASSED|FAILED" "$R/job_tests.log" | tee -a "$R/summary.txt"
  pack

  # 4. Logits against transformers (waits for the trained model).
  if [ -n "$train_pid" ]; then
    wait "$train_pid"
    summary "training: exit $?; $(tail -1 "$R/train.log")"
    cp "$DEMO/train_result.json" "$R/" 2>/dev/null
    [ -s "$DEMO/model.safetensors" ] && tar cf "$OUT/demo-model.tar" -C /tmp demo-model
    pack
  fi
  [ -s "$DEMO/model.safetensors" ] && trained=(--trained "$DEMO")
  python3 tools/hf_compare.py --tpinfer $B --work /tmp/hfc --json "$R/hf_compare.json" "${trained[@]}" \
    2>&1 | grep --line-buffered -v -i warning >"$R/hf_compare.log"
  summary "hf_compare.py: exit ${PIPESTATUS[0]}"
  sed -n '/^| model/,$p' "$R/hf_compare.log" | tee -a "$R/summary.txt"
  pack

  # 5. The demo: the trained model converted (bf16) and run on text prompts.
  if [ -s "$DEMO/model.safetensors" ]; then
    $B convert --quiet --hf "$DEMO" --output /tmp/demo-model.h5 --dtype bf16 >"$R/demo_convert.log" 2>&1
    summary "demo model: $(tail -3 "$R/demo_convert.log" | head -1)"
    rm -f "$R/demo-text.jsonl"
    mpirun --allow-run-as-root -np 1 $B run --model /tmp/demo-model.h5 --input inputs/prompts-text.jsonl \
      --output "$R/demo-text.jsonl" >"$R/demo_run.log" 2>&1
    summary "demo run: exit $?; $(grep 'done:' "$R/demo_run.log")"
    python3 - "$R/demo-text.jsonl" <<'PY' | tee -a "$R/summary.txt"
import json, sys
prompts = {json.loads(l)["id"]: json.loads(l)["prompt"] for l in open("inputs/prompts-text.jsonl")}
for line in list(open(sys.argv[1]))[:6]:
    j = json.loads(line)
    print(f"  {prompts.get(j['id'], '?')!r} -> {j.get('text', j.get('error'))!r}")
PY
  fi

  summary "total: $(($(date +%s) - t0)) s"
  pack
  ls -la "$OUT"
}

# Nsight Compute (on kinds where ncu reads counters) on one launch of the
# decode and of the prefill attention kernel at Llama-3-8B shapes (64 x 1024
# decode, 2048-token prefill); full reports in $OUT, key lines printed.
cmd_ncu() {
  args_at_most ncu 0 "$@"
  local k f keys
  gpu_setup
  command -v ncu >/dev/null || die "ncu: Nsight Compute (ncu) not found on this machine"
  gpu_build tpinfer_gpu_bench
  for k in decode prefill; do
    ncu --clock-control none --section SpeedOfLight --section Occupancy \
      --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \
      --section SchedulerStats -k "regex:attn_${k}_kernel" --launch-skip 3 --launch-count 1 \
      ./build-gpu/tests/tpinfer_gpu_bench attention >"$OUT/ncu_$k.log" 2>&1
  done
  keys="attn_|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Occupancy|Block Limit"
  keys+="|Registers Per|Dynamic Shared|Grid Size|Issued Warp Per|No Eligible|L2 Hit|Eligible Warps"
  keys+="|Active Warps|stalled"
  for f in ncu_decode ncu_prefill; do
    echo "== $f"
    grep -E "$keys" "$OUT/$f.log" | sed 's/  */ /g' | head -45
  done
}

# Op timings at Llama-3-8B shapes (docs/CUDA_BACKEND.md's performance table).
cmd_opbench() {
  args_at_most opbench 1 "$@"
  case ${1:-} in
    "" | linear | attention | rows) ;;
    *) die "opbench: unknown group '$1' (one of linear, attention, rows; none: all)" ;;
  esac
  gpu_setup
  gpu_build tpinfer_gpu_bench
  ./build-gpu/tests/tpinfer_gpu_bench "$@" 2>&1 | tee "$OUT/opbench.log"
  return "${PIPESTATUS[0]}"
}

# Only the earlier revision's binary (e.g. beside a call's other work, for
# `table` in the next call on the same machine).
cmd_oldbuild() {
  [ $# -eq 1 ] || die "oldbuild needs OLD_TGZ (git archive --prefix=old/ REV -o .oldtree/old.tgz)"
  [ -s "$1" ] || die "oldbuild: $1 is not there (carry it)"
  source tools/gpu-kit-env.sh || exit
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
  old_tree_build "$1"
}

subcommands="build test bench ab abtree table oldbuild det checks prefix steps profile multi hf ncu opbench"
if [ $# -eq 0 ]; then
  usage >&2
  exit 2
fi
sub=$1
shift
case $sub in
  -h | --help | help) usage ;;
  build | test | bench | ab | abtree | table | oldbuild | det | checks | prefix | steps | profile | multi | hf | ncu | opbench) "cmd_$sub" "$@" ;;
  *) die "unknown subcommand '$sub' (one of: $subcommands; tools/gpu.sh --help)" ;;
esac
