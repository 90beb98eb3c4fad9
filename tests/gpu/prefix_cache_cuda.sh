#!/usr/bin/env bash
# The prefix cache on the cuda backend: a few-shot file (4 preambles of 300
# tokens, a short question each, greedy) run with the cache off and on, with so
# few KV blocks that sequences are preempted and cached blocks evicted, with
# the fp8 KV cache, at DP=2 and TP=2 (two ranks on one GPU), and on the cpu
# backend. A cached prefix is attention over stored KV instead of the same
# chunk's, so results may differ only at near-ties (compare_near_ties.py, the
# rule gpu_jobs uses); the cache must have given most prompt tokens.
# usage: prefix_cache_cuda.sh BUILD_DIR   (exit 77: skipped, no GPU)
source "$(dirname "$0")/gpu_job_setup.sh" "$1"
$B make-model --config "$root/inputs/demo-config.json" --output "$tmp/m.h5" --seed 1 \
  --dtype bfloat16 >/dev/null
python3 "$root/tools/make_workload.py" --kind fewshot --n 160 --prefixes 4 --prefix-len 300 \
  --isl 5-40 --osl 24 --vocab 4096 --seed 3 | sed 's/,"ignore_eos":true//' >"$tmp/in.jsonl"
prompt_tokens=$(python3 -c "import json,sys; print(sum(len(json.loads(l)['prompt_tokens']) for l in open(sys.argv[1])))" "$tmp/in.jsonl")
status=0
check() {  # what condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; status=1; fi
}
run() {  # name np tp backend [more options]
  mpirun -np "$2" "$B" run --backend "$4" --model "$tmp/m.h5" --input "$tmp/in.jsonl" \
    --output "$tmp/$1.jsonl" --tp "$3" "${@:5}" >"$tmp/$1.log" 2>&1 || { cat "$tmp/$1.log"; exit 1; }
  grep -h "done:" "$tmp/$1.log" | tail -1 | sed "s/^tpinfer: /$1: /"
}
counter() {  # name regex-before-number: the summary's number before the words
  grep -h "done:" "$tmp/$1.log" | tail -1 | grep -oE "[0-9]+ $2" | grep -oE "^[0-9]+"
}
run off 1 1 cuda --prefix-cache off
run on 1 1 cuda
# 40 blocks of 16 tokens hold two of these sequences: preemption and eviction.
run tight 1 1 cuda --kv-blocks 40
run fp8_off 1 1 cuda --kv-cache-dtype fp8 --prefix-cache off
run fp8_on 1 1 cuda --kv-cache-dtype fp8
run dp2 2 1 cuda
run tp2 2 2 cuda
run cpu 1 1 cpu
check "cache off reuses nothing" "[ $(counter off 'prompt tokens from') = 0 ]"
for name in on fp8_on dp2 tp2 cpu; do
  reused=$(counter $name 'prompt tokens from')
  # 156 of 160 requests find their 288-token (18-block) preamble cached: ~0.8.
  check "$name: the cache gives >= 0.7 of $prompt_tokens prompt tokens ($reused)" \
    "python3 -c 'import sys; sys.exit(0 if $reused >= 0.7 * $prompt_tokens else 1)'"
done
check "tight: sequences preempted ($(counter tight preemptions))" "[ $(counter tight preemptions) -gt 0 ]"
check "tight: cached blocks evicted ($(counter tight 'blocks evicted'))" \
  "[ $(counter tight 'blocks evicted') -gt 0 ]"
for pair in "off on" "on tight" "fp8_off fp8_on" "on dp2" "on tp2" "cpu on"; do
  set -- $pair
  python3 "$root/tests/gpu/compare_near_ties.py" --tpinfer "$B" --model "$tmp/m.h5" \
    --input "$tmp/in.jsonl" "$tmp/$1.jsonl" "$tmp/$2.jsonl" || status=1
done
exit $status
