#!/usr/bin/env bash
# What a bare `mpirun ... tpinfer run` does when mpirun itself is signalled
# (README "Exit codes"), and that `--resume` afterwards completes the job exactly
# once. Measured with OpenMPI 4.1:
# - SIGTERM to mpirun, or SIGINT to its process group (Ctrl-C at a terminal:
#   the ranks are in process groups of their own and do not get it): mpirun
#   exits 1 whatever the ranks say. It sends the ranks SIGCONT at once, SIGTERM
#   odls_base_sigkill_timeout seconds (1) later and SIGKILL as long again after
#   that, so the ranks drain on SIGTERM (manifest "drained") when they can stop
#   within that second, and are killed mid-step otherwise (manifest "running").
# - SIGUSR1 to mpirun: forwarded to the ranks, which drain; mpirun exits 75.
# usage: tests/launchers/bare_mpirun_signals_test.sh TPINFER_BIN SOURCE_DIR
# Exit 0 passed, 1 failed, 77 skipped (no mpirun or python3).
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
name=bare-mpirun-signals bin=$(realpath "$1") src=$(realpath "$2")
source "$src/tests/launchers/lib.sh"

# Each signalled run writes up to ~100 results in the second before its ranks
# stop (more on a fast machine): enough work that three of them leave some.
readonly total=600
model=$src/inputs/demo-model.h5 in=$work/in.jsonl out=$work/out.jsonl
make_input $total "$in"
run=(run --model "$model" --input "$in" --checkpoint-interval 0.1 --progress-interval 100 --max-batch 16)
mpirun -np 2 "$bin" "${run[@]}" --output "$work/ref.jsonl" >"$work/ref.log" 2>&1 ||
  { log=$work/ref.log; fail "the uninterrupted run"; }
say "uninterrupted run: $(lines "$work/ref.jsonl") results (mpirun -np 2, dp 2)"

# signal_mpirun N SIGNAL TARGET WANT_RC OPTIONS...: mpirun in a process group of
# its own (as a shell with job control starts it); once it has written N more
# results, SIGNAL goes to mpirun ("pid") or to its process group ("group").
signal_mpirun() {
  local more=$1 sig=$2 target=$3 want=$4 rc at left t status
  shift 4
  log=$work/$sig-$target.log
  set -m
  mpirun -np 2 "$bin" "${run[@]}" --output "$out" "$@" >"$log" 2>&1 &
  local pid=$!
  set +m
  wait_until 120 "$more new results" lines_at_least "$out" $(($(lines "$out") + more))
  # The ranks are not in mpirun's process group: a terminal's Ctrl-C misses them.
  for r in $(pgrep -P "$pid"); do
    [ "$(ps -o pgid= -p "$r" | tr -d ' ')" != "$pid" ] || fail "rank $r is in mpirun's process group"
  done
  at=$(lines "$out") t=$(date +%s.%N)
  if [ "$target" = group ]; then kill -s "$sig" -- "-$pid"; else kill -s "$sig" "$pid"; fi
  wait "$pid"
  rc=$?
  t=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t")
  left=$(lines "$out") status=$(manifest_status "$out")
  say "SIG$sig to mpirun's $target at $at/$total results: mpirun exit $rc after $t s," \
    "$left results written, manifest \"$status\""
  [ "$rc" = "$want" ] || fail "mpirun exited $rc after SIG$sig, want $want"
  [ "$left" -lt $total ] || fail "the job finished before SIG$sig took effect (use more work)"
  wait_until 10 "this job's processes to end" no_own_processes
  case $status in
    drained) grep -q "^tpinfer: drained on signal $want_signal" "$log" ||
               fail "the ranks did not drain on signal $want_signal" ;;
    running) [ "$sig" != USR1 ] || fail "the ranks did not drain on USR1"
             say "(the ranks did not stop within mpirun's 1 s and were killed mid-step)" ;;
    *) fail "manifest: $status" ;;
  esac
}

# 1. kill PID of mpirun: the ranks get SIGTERM from mpirun a second later.
want_signal=15
signal_mpirun 10 TERM pid 1
# 2. Ctrl-C: SIGINT to mpirun's process group; mpirun passes SIGTERM, not SIGINT.
signal_mpirun 10 INT group 1 --resume
# 3. SIGUSR1 reaches the ranks as it is; mpirun returns their 75.
want_signal=10
signal_mpirun 10 USR1 pid 75 --resume

# 4. --resume completes it.
log=$work/last.log
mpirun -np 2 "$bin" "${run[@]}" --output "$out" --resume >"$log" 2>&1 || fail "the last --resume"
[ "$(manifest_status "$out")" = "done" ] || fail "manifest: $(manifest_status "$out"), want done"
same=$(same_results "$work/ref.jsonl" "$out") || fail "$same"
say "$same as the uninterrupted run"
say "PASSED in $((SECONDS - t0)) s"
passed=1
