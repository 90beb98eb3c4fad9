#!/usr/bin/env bash
# jobs/mpirun-job.sh stopped three times mid-run, as a user stops it: SIGTERM
# to the script (kill PID, docker stop), SIGINT to its whole process group (what
# Ctrl-C at a terminal sends) and SIGUSR1. Each time the ranks must drain (exit
# 75, manifest "drained", the ranks' own "drained on signal 10"), the script
# must exit 75 without restarting and print the command that resumes; that
# command, run as printed, then resumes, and the last run's output must equal
# an uninterrupted run's: every id once, the same tokens.
# usage: tests/launchers/mpirun_job_signals_test.sh TPINFER_BIN SOURCE_DIR
# Exit 0 passed, 1 failed, 77 skipped (no mpirun or python3).
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
name=mpirun-job-signals bin=$(realpath "$1") src=$(realpath "$2")
source "$src/tests/launchers/lib.sh"
command -v setsid >/dev/null || skip "no setsid (util-linux), which jobs/mpirun-job.sh needs"

readonly total=200
model=$src/inputs/demo-model.h5 in=$work/in.jsonl out=$work/out.jsonl
make_input $total "$in"
run_opts=(--checkpoint-interval 0.1 --progress-interval 100 --max-batch 16)
mpirun -np 2 "$bin" run --model "$model" --input "$in" --output "$work/ref.jsonl" "${run_opts[@]}" \
  >"$work/ref.log" 2>&1 || { log=$work/ref.log; fail "the uninterrupted run"; }
say "uninterrupted run: $(lines "$work/ref.jsonl") results (mpirun -np 2, dp 2)"

# start_job LOG CMD...: the job as a shell with job control starts it: in a
# process group of its own (the one Ctrl-C at a terminal signals), SIGINT not
# ignored (as it is in a background job without job control, where a trap on
# it cannot be set). job_pid is the script's pid and its process group's id.
start_job() {
  log=$1
  shift
  set -m
  "$@" >"$log" 2>&1 &
  job_pid=$!
  set +m
}
# interrupt N SIGNAL TARGET: once this start has written N more results,
# sends SIGNAL to the script (TARGET "pid") or its process group ("group").
interrupt() {
  local more=$1 sig=$2 target=$3 rc
  wait_until 120 "$more new results" lines_at_least "$out" $(($(lines "$out") + more))
  local at
  at=$(lines "$out")
  if [ "$target" = group ]; then kill -s "$sig" -- "-$job_pid"; else kill -s "$sig" "$job_pid"; fi
  wait "$job_pid"
  rc=$?
  local left
  left=$(lines "$out")
  say "SIG$sig to the script's $target at $at/$total results: exit $rc, $left results written"
  [ "$rc" = 75 ] || fail "the script exited $rc after SIG$sig, want 75"
  [ "$left" -lt $total ] || fail "the job finished before SIG$sig took effect (use more work)"
  [ "$(manifest_status "$out")" = drained ] || fail "manifest: $(manifest_status "$out"), want drained"
  grep -q "^mpirun-job: stopped by SIG$sig (mpirun exit 75" "$log" ||
    fail "no 'stopped by SIG$sig (mpirun exit 75' line"
  grep -q "^tpinfer: drained on signal 10" "$log" || fail "the ranks did not drain on USR1"
  ! grep -q "restart [0-9]* of" "$log" || fail "the script restarted after SIG$sig"
  wait_until 10 "this job's processes to end" no_own_processes
  resume_cmd=$(grep -A1 "Resume with:$" "$log" | sed -n '2s/^  //p')
  [ -n "$resume_cmd" ] || fail "no resume command printed"
}

# 1. SIGTERM to the script alone (kill PID, docker stop, systemd's KillMode=mixed).
start_job "$work/job1.log" env TPINFER_BIN="$bin" "$src/jobs/mpirun-job.sh" 2 "$model" "$in" "$out" \
  "${run_opts[@]}"
interrupt 10 TERM pid
[[ "$resume_cmd" == *"/jobs/mpirun-job.sh --max-restarts 3 2 $model $in $out"* ]] ||
  fail "the resume command does not repeat the job's: $resume_cmd"
say "resume command printed: $resume_cmd"

# 2. Ctrl-C: SIGINT to the process group, run from the printed command.
eval "start_job \"\$work/job2.log\" env $resume_cmd"
interrupt 10 INT group

# 3. SIGUSR1 (what Slurm's --signal sends before the time limit).
eval "start_job \"\$work/job3.log\" env $resume_cmd"
interrupt 10 USR1 pid

# 4. The printed command finishes the job.
eval "start_job \"\$work/job4.log\" env $resume_cmd"
wait "$job_pid"
rc=$?
[ "$rc" = 0 ] || fail "the last run exited $rc"
for n in 2 3 4; do
  grep -q "more from the earlier run)" "$work/job$n.log" ||
    { log=$work/job$n.log; fail "run $n did not resume"; }
done
[ "$(manifest_status "$out")" = "done" ] || fail "manifest: $(manifest_status "$out"), want done"
same=$(same_results "$work/ref.jsonl" "$out") || fail "$same"
say "$same as the uninterrupted run"
say "PASSED in $((SECONDS - t0)) s"
passed=1
