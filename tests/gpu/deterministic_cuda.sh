#!/usr/bin/env bash
# --deterministic on the cuda backend, whole jobs: the same 108 requests (36
# greedy, 72 sampled, 40 new tokens each) on the trained demo model give
# byte-identical result lines (sorted by id) at --max-batch 1, at the default
# batch mixed with 200 other requests, at --max-step-tokens 64 and 8192, at DP 2
# (two ranks on one GPU), and killed with kill -9 and resumed; at TP 2, the same
# between --max-batch 1 and the default batch. The default mode's differences
# over the same runs are printed beside (what the mode buys).
# usage: deterministic_cuda.sh BUILD_DIR   (exit 77: skipped, no GPU)
# BACKEND=cpu: the same checks on the cpu backend (gpu_job_setup.sh).
source "$(dirname "$0")/gpu_job_setup.sh" "$1"
M=$root/inputs/demo-model.h5
python3 -c 'import json, sys; [print(json.loads(l)["prompt"]) for l in open(sys.argv[1])]' \
  "$root/inputs/prompts-text.jsonl" | $B tokenize --model "$M" --bos >"$tmp/ids.txt"
python3 - "$tmp/ids.txt" "$tmp/targets.jsonl" "$tmp/mixed.jsonl" <<'PY'
import json, random, sys
ids = [json.loads(l) for l in open(sys.argv[1])]
r = random.Random(11)
targets = []
for i in range(108):
    j = {"id": f"t{i:03d}", "prompt_tokens": ids[i % len(ids)], "max_new_tokens": 40,
         "ignore_eos": True}
    if i % 3:
        j.update(temperature=0.8, top_p=0.95, seed=500 + i, logprobs=True, top_logprobs=2)
    targets.append(j)
fillers = []
for i in range(200):
    p = ids[r.randrange(len(ids))]
    p = p + ids[r.randrange(len(ids))][1:] * r.randrange(0, 4)  # longer prompts, other lengths
    fillers.append({"id": f"f{i:03d}", "prompt_tokens": p, "max_new_tokens": r.randrange(1, 120),
                    "ignore_eos": True, "temperature": 0.7, "seed": i})
with open(sys.argv[2], "w") as out:
    for j in targets:
        out.write(json.dumps(j) + "\n")
mixed = targets + fillers
r.shuffle(mixed)
with open(sys.argv[3], "w") as out:
    for j in mixed:
        out.write(json.dumps(j) + "\n")
PY
job() {  # np out input [extra...]
  local np=$1 out=$2 input=$3
  shift 3
  timeout -k 5 300 mpirun -np "$np" "$B" run --backend "${BACKEND:-cuda}" --model "$M" --input "$input" \
    --output "$out" --memory-fraction 0.2 --checkpoint-interval 0.05 "$@"
}
# The target requests' lines, sorted by id.
targets() { grep '"id":"t' "$1" | sort; }
status=0
check() {  # what condition
  if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; status=1; fi
}
# Requests whose lines differ from the reference's (by id), of the targets.
differ() {  # ref other
  python3 - "$1" "$2" <<'PY'
import json, sys
def load(p):
    return {json.loads(l)["id"]: l for l in open(p) if '"id":"t' in l}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(sum(1 for k in a if a[k] != b.get(k)), "of", len(a))
PY
}

for mode in default deterministic; do
  flag=()
  [ $mode = deterministic ] && flag=(--deterministic)
  d=$tmp/$mode
  mkdir -p "$d"
  job 1 "$d/batch1.jsonl" "$tmp/targets.jsonl" --max-batch 1 "${flag[@]}" >"$d/batch1.log" 2>&1 ||
    { cat "$d/batch1.log"; exit 1; }
  job 1 "$d/mixed.jsonl" "$tmp/mixed.jsonl" "${flag[@]}" >"$d/mixed.log" 2>&1 ||
    { cat "$d/mixed.log"; exit 1; }
  job 1 "$d/step64.jsonl" "$tmp/targets.jsonl" --max-step-tokens 64 "${flag[@]}" \
    >"$d/step64.log" 2>&1 || { cat "$d/step64.log"; exit 1; }
  job 1 "$d/step8192.jsonl" "$tmp/targets.jsonl" --max-step-tokens 8192 "${flag[@]}" \
    >"$d/step8192.log" 2>&1 || { cat "$d/step8192.log"; exit 1; }
  job 2 "$d/dp2.jsonl" "$tmp/targets.jsonl" "${flag[@]}" >"$d/dp2.log" 2>&1 ||
    { cat "$d/dp2.log"; exit 1; }
  for run in mixed step64 step8192 dp2; do
    echo "$mode: $run vs --max-batch 1: $(differ "$d/batch1.jsonl" "$d/$run.jsonl") requests differ"
  done
done

d=$tmp/deterministic
for run in mixed step64 step8192 dp2; do
  check "--deterministic: $run gives the --max-batch 1 bytes" \
    "cmp -s <(targets '$d/batch1.jsonl') <(targets '$d/$run.jsonl')"
done
grep -q deterministic "$d/batch1.log" || { echo "FAIL: the start-up line does not name the mode"; status=1; }

# kill -9 once a random number of the mixed file's results are written, then --resume.
lines=$((30 + RANDOM % 200))
out=$d/kill.jsonl
(
  for _ in $(seq 6000); do [ "$(cat "$out" 2>/dev/null | wc -l)" -ge $lines ] && break; sleep 0.01; done
  pkill -KILL -f -- "--output $out" || true
) &
rc=0
job 1 "$out" "$tmp/mixed.jsonl" --deterministic >"$d/kill.log" 2>&1 || rc=$?
wait
echo "kill -9 after $lines results: exit $rc, $(wc -l <"$out") results written"
check "killed job exits 137" "[ $rc = 137 ]"
job 1 "$out" "$tmp/mixed.jsonl" --deterministic --resume >"$d/resume.log" 2>&1 ||
  { cat "$d/resume.log"; status=1; }
check "killed and resumed: the whole file's bytes equal the uninterrupted run's" \
  "cmp -s <(sort '$d/mixed.jsonl') <(sort '$out')"
rc=0
job 1 "$out" "$tmp/mixed.jsonl" --resume >"$d/refused.log" 2>&1 || rc=$?
check "--resume without --deterministic is refused (exit 2)" \
  "[ $rc = 2 ] && grep -q 'written with --deterministic' '$d/refused.log'"

# TP 2 (two ranks on one GPU, host-staged collectives): batch-invariant at its own TP size.
job 2 "$d/tp2-batch1.jsonl" "$tmp/targets.jsonl" --tp 2 --max-batch 1 --deterministic \
  >"$d/tp2-batch1.log" 2>&1 || { cat "$d/tp2-batch1.log"; exit 1; }
job 2 "$d/tp2-mixed.jsonl" "$tmp/mixed.jsonl" --tp 2 --deterministic >"$d/tp2-mixed.log" 2>&1 ||
  { cat "$d/tp2-mixed.log"; exit 1; }
echo "TP 2 vs TP 1, deterministic: $(differ "$d/batch1.jsonl" "$d/tp2-batch1.jsonl") requests differ"
check "--deterministic --tp 2: the mixed run gives the --max-batch 1 bytes" \
  "cmp -s <(targets '$d/tp2-batch1.jsonl') <(targets '$d/tp2-mixed.jsonl')"
exit $status
