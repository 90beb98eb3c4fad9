#!/usr/bin/env bash
# Failure handling on the cuda backend (issue: checkpoint-and-restart, GPU part):
#   1. DP=2 (two ranks on one GPU): a rank crashes at an exact step
#      (TPINFER_FAULT kind=crash), then --resume;
#   2. TP=2 (two ranks on one GPU, host-staged collectives): kill -9 of a random
#      rank once some results are written, then --resume;
#   3. TP=2: a rank hangs inside an engine step (kind=hang,op=engine_step): its
#      peer's watchdog ends the job with exit 75 within --collective-timeout,
#      naming the operation; then --resume;
# every job runs --deterministic (batch-invariant kernels), so each resumed
# output must hold every id once and equal an uninterrupted run of the same
# layout byte for byte (sorted by id), although a restart changes which
# requests share a step.
# usage: faults_cuda.sh BUILD_DIR   (exit 77: skipped, no GPU)
# BACKEND=cpu: the same checks on the cpu backend (gpu_job_setup.sh).
source "$(dirname "$0")/gpu_job_setup.sh" "$1"
# The trained demo model (peaked distributions, as real models have; on the
# random one every sampled token sits near some sampling boundary) over its
# 36 text prompts, given as token ids (with BOS): 400 requests, a third
# sampled with their own seeds, long enough (EOS ignored) that a run takes
# many steps at --max-batch 16.
M=$root/inputs/demo-model.h5
python3 -c 'import json, sys; [print(json.loads(l)["prompt"]) for l in open(sys.argv[1])]' \
  "$root/inputs/prompts-text.jsonl" | $B tokenize --model "$M" --bos >"$tmp/ids.txt"
python3 - "$tmp/ids.txt" "$tmp/in.jsonl" <<'PY'
import json, random, sys
ids = [json.loads(l) for l in open(sys.argv[1])]
r = random.Random(7)
with open(sys.argv[2], "w") as out:
    for i in range(400):
        j = {"id": f"g{i}", "prompt_tokens": ids[i % len(ids)], "max_new_tokens": r.randrange(8, 96),
             "ignore_eos": True}
        if i % 3 == 1:
            j.update(temperature=0.9, top_p=0.9, seed=1000 + i)
        out.write(json.dumps(j) + "\n")
PY
job() {  # np tp out [extra...]
  local np=$1 tp=$2 out=$3
  shift 3
  timeout -k 5 300 mpirun -np "$np" "$B" run --backend "${BACKEND:-cuda}" --model "$M" \
    --input "$tmp/in.jsonl" --output "$out" --tp "$tp" --max-batch 16 \
    --checkpoint-interval 0.05 --memory-fraction 0.2 --deterministic "$@"
}
# Every line, byte for byte; on a difference, how many requests differ.
compare() {  # reference result
  cmp -s <(sort "$1") <(sort "$2") && return
  python3 - "$1" "$2" <<'PY'
import json, sys
def load(p):
    return {json.loads(l)["id"]: l for l in open(p)}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(f"{sum(1 for k in a if a[k] != b.get(k))} of {len(a)} requests differ, {len(b) - len(a)} extra lines")
PY
  return 1
}
status=0
check() {  # what condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; status=1; fi
}
for layout in "2 1" "2 2"; do
  set -- $layout
  job "$1" "$2" "$tmp/ref-$1-$2.jsonl" >"$tmp/ref-$1-$2.log" 2>&1 ||
    { cat "$tmp/ref-$1-$2.log"; exit 1; }
  echo "reference -np $1 --tp $2: $(grep -h 'done:' "$tmp/ref-$1-$2.log" | tail -1)"
done

# 1. DP=2: rank 1 crashes at step 20.
out=$tmp/crash.jsonl
rc=0
TPINFER_FAULT=rank=1,step=20,kind=crash job 2 1 "$out" >"$tmp/crash.log" 2>&1 || rc=$?
echo "DP=2 crash of rank 1 at step 20: exit $rc, $(wc -l <"$out") results written"
check "crash exits 137" "[ $rc = 137 ]"
check "crash named in the log" "grep -q 'crashes at step' '$tmp/crash.log'"
job 2 1 "$out" --resume >"$tmp/crash-resume.log" 2>&1 || { cat "$tmp/crash-resume.log"; status=1; }
check "DP=2 resumed output equals the uninterrupted one" "compare '$tmp/ref-2-1.jsonl' '$out'"

# 2. TP=2: kill -9 of a random rank once a random number of results are written.
rank=$((RANDOM % 2)) lines=$((20 + RANDOM % 150))
out=$tmp/kill.jsonl
(
  for _ in $(seq 6000); do [ "$(cat "$out" 2>/dev/null | wc -l)" -ge $lines ] && break; sleep 0.01; done
  for p in $(pgrep -x tpinfer); do
    tr "\0" " " </proc/$p/cmdline 2>/dev/null | grep -qF -- "$out" &&
      tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=$rank &&
      kill -KILL "$p"
  done
) &
rc=0
job 2 2 "$out" >"$tmp/kill.log" 2>&1 || rc=$?
wait
echo "TP=2 kill -9 of rank $rank after $lines results: exit $rc, $(wc -l <"$out") results written"
check "killed job exits 137" "[ $rc = 137 ]"
job 2 2 "$out" --resume >"$tmp/kill-resume.log" 2>&1 || { cat "$tmp/kill-resume.log"; status=1; }
check "TP=2 resumed output equals the uninterrupted one" "compare '$tmp/ref-2-2.jsonl' '$out'"

# 3. TP=2: rank 1 hangs inside its engine step 30; rank 0 waits in the step's all-reduce.
out=$tmp/hang.jsonl
rc=0
t0=$(date +%s.%N)
TPINFER_FAULT=rank=1,step=30,kind=hang,op=engine_step job 2 2 "$out" --collective-timeout 10 \
  >"$tmp/hang.log" 2>&1 || rc=$?
took=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
echo "TP=2 hang of rank 1 inside step 30, --collective-timeout 10: exit $rc after $took s"
grep -h "tpinfer: error" "$tmp/hang.log" | head -3
check "hang exits 75" "[ $rc = 75 ]"
check "hang ends within 40 s" "python3 -c 'import sys; sys.exit(0 if $took < 40 else 1)'"
check "the log names the operation" "grep -q 'did not finish within --collective-timeout 10 s' '$tmp/hang.log'"
job 2 2 "$out" --resume >"$tmp/hang-resume.log" 2>&1 || { cat "$tmp/hang-resume.log"; status=1; }
check "TP=2 resumed output after the hang equals the uninterrupted one" "compare '$tmp/ref-2-2.jsonl' '$out'"
[ $status = 0 ] || for f in crash kill hang; do echo "== $f.log"; tail -20 "$tmp/$f.log"; done
exit $status
