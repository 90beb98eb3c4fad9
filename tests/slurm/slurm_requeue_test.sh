#!/usr/bin/env bash
# A real Slurm on localhost runs jobs/slurm-job.sbatch on the cpu backend and
# interrupts it twice mid-run: `scontrol requeue` (what preemption does:
# SIGTERM to the whole job, Slurm requeues it) and USR1 to the batch shell
# (what --signal=B:USR1@120 sends before the time limit: the script requeues
# the job itself). The final output must equal an uninterrupted run's: every
# id once, the same tokens (greedy requests: a sampled token on a boundary may
# flip after a restart, see README "Restarting").
# usage: tests/slurm/slurm_requeue_test.sh TPINFER_BIN SOURCE_DIR [srun|mpirun]
# Installs Slurm and munge from Debian packages when they are missing, starts
# munged, slurmctld and slurmd directly (no systemd) with their state in a new
# /tmp folder, and stops them at the end. Exit 0 passed, 1 failed, 77 skipped
# (not root, no apt, or the daemons cannot run on this machine: says why).
# TPINFER_SLURM_TEST_KEEP=1 keeps the folder (logs, outputs) after a pass too.
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
bin=$(realpath "$1") src=$(realpath "$2") launcher=${3:-srun}
readonly total=400 skip=77
t0=$SECONDS
# Give up well before ctest's TIMEOUT (600 s), which would skip the trap that
# stops the daemons.
readonly deadline=$((t0 + 480))
say() { echo "slurm-test [$((SECONDS - t0))s]: $*"; }
skip() { say "SKIPPED: $*"; exit $skip; }

[ "$(id -u)" = 0 ] || skip "needs root (to install Slurm and run slurmd, which starts jobs as root here)"

# 1. Slurm and munge from Debian's packages, without starting their services.
install_slurm() {
  command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install it"
  say "installing slurmctld slurmd slurm-client munge"
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e $policy ]; then  # package scripts must not start daemons outside this test
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && own_policy=1
  fi
  local apt=(apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/tmp/slurm-test-apt.$$ 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${apt[@]}"; } >>/tmp/slurm-test-apt.$$ 2>&1
  local rc=$?
  [ $own_policy = 0 ] || rm -f $policy
  [ $rc = 0 ] || { tail -5 /tmp/slurm-test-apt.$$; rm -f /tmp/slurm-test-apt.$$;
                   skip "apt-get could not install Slurm and munge"; }
  rm -f /tmp/slurm-test-apt.$$
}
for cmd in munged mungekey slurmctld slurmd sbatch scontrol; do
  command -v $cmd >/dev/null || { install_slurm; break; }
done

# 2. The daemons, as root, from one private folder; stopped by the trap.
# An outer Slurm job's variables would point sbatch at another cluster.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM_')
work=$(mktemp -d /tmp/tpinfer-slurm.XXXXXX)
chmod 755 "$work"  # munged refuses a socket folder others cannot read
mkdir -p "$work"/{munge,state,spool,log}
export SLURM_CONF=$work/slurm.conf
jid="" passed=0
stop_pid() {  # stop_pid PIDFILE: TERM, then KILL after 10 s
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}
cleanup() {
  set +e
  if [ -n "$jid" ] && [ -f "$work/slurmctld.pid" ]; then
    scancel "$jid" 2>/dev/null
    for _ in $(seq 80); do [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop_pid "$work/slurmd.pid"
  stop_pid "$work/slurmctld.pid"
  stop_pid "$work/munge/munged.pid"
  # Anything of this test that outlived its job (never expected).
  for p in $(pgrep -f "$work/"); do kill -KILL "$p" 2>/dev/null; done
  if [ $passed = 1 ] && [ -z "${TPINFER_SLURM_TEST_KEEP:-}" ]; then rm -rf "$work"
  else say "state and logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

daemon_log_tail() { tail -n 5 "$work"/log/*.log "$work/munge/munged.log" 2>/dev/null; }
mungekey -c -k "$work/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$work/munge/munge.key"
munge_sock=$work/munge/munge.socket
munged -f --socket="$munge_sock" --key-file="$work/munge/munge.key" \
  --log-file="$work/munge/munged.log" --pid-file="$work/munge/munged.pid" \
  --seed-file="$work/munge/munged.seed" ||
  { daemon_log_tail; skip "munged cannot run on this machine"; }
munge -n -S "$munge_sock" | unmunge -S "$munge_sock" >/dev/null 2>&1 ||
  { daemon_log_tail; skip "munged does not answer on its socket"; }

port_free() { ! (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 30000))
  port_free $p && port_free $((p + 1)) && { port=$p; break; }
done
[ -n "$port" ] || skip "no two free TCP ports on localhost for slurmctld and slurmd"
node=$(hostname -s)
sed -e "s|@DIR@|$work|g" -e "s|@NODE@|$node|g" -e "s|@CTLD_PORT@|$port|g" \
  -e "s|@SLURMD_PORT@|$((port + 1))|g" "$src/tests/slurm/slurm.conf.in" >"$SLURM_CONF"
# slurmd loads a cgroup plugin even when nothing uses cgroups (as here), and
# autodetection fails without /sys/fs/cgroup (a chroot): name one.
echo "CgroupPlugin=cgroup/v1" >"$work/cgroup.conf"
slurmctld -c -f "$SLURM_CONF" || { daemon_log_tail; skip "slurmctld cannot start on this machine"; }
slurmd -f "$SLURM_CONF" -N "$node" || { daemon_log_tail; skip "slurmd cannot start on this machine"; }
for _ in $(seq 60); do
  [ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ] && break
  sleep 0.5
done
[ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ] ||
  { sinfo; daemon_log_tail; skip "the Slurm node did not come up (daemons cannot run here)"; }
say "munged, slurmctld (port $port) and slurmd up on $node; state in $work"

# 3. The work: the demo model and $total greedy requests of 32 to 128 tokens,
# about 10 s on 2 cores, so that both interruptions land mid-run.
fail() {
  say "FAIL: $*"
  echo "--- job log (last 30 lines)"; tail -n 30 "$work/job.log" 2>/dev/null
  echo "--- slurmctld log (last 10 lines)"; tail -n 10 "$work/log/slurmctld.log" 2>/dev/null
  exit 1
}
# shellcheck source=tools/mpirun-env.sh
source "$src/tools/mpirun-env.sh"
# Ranks launched by srun do not know that the box is oversubscribed: let them
# yield while they wait in a collective instead of spinning.
export OMPI_MCA_mpi_yield_when_idle=1
"$bin" make-model --config "$src/inputs/demo-config.json" --output "$work/model.h5" --seed 1 \
  >/dev/null || fail "make-model"
awk -v n=$total 'BEGIN { for (i = 0; i < n; i++) {
  p = ""; for (t = 0; t < 8 + (i * 13) % 60; t++) p = p (t ? ", " : "") 3 + (i * 31 + t * 7) % 4000
  printf "{\"id\": \"r%03d\", \"prompt_tokens\": [%s], \"max_new_tokens\": %d, \"ignore_eos\": true}\n",
         i, p, 32 + (i * 17) % 97 } }' >"$work/in.jsonl"
run_args=(--tp 2 --checkpoint-interval 0.2 --progress-interval 2)
t_ref=$SECONDS
timeout 300 mpirun -np 2 "$bin" run --model "$work/model.h5" --input "$work/in.jsonl" --output "$work/ref.jsonl" \
  "${run_args[@]}" >"$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "the uninterrupted run"; }
say "uninterrupted run: $(wc -l <"$work/ref.jsonl") results in $((SECONDS - t_ref)) s (mpirun -np 2, --tp 2)"

# 4. The job, interrupted twice.
out=$work/out.jsonl log=$work/job.log
lines() { if [ -f "$out" ]; then wc -l <"$out"; else echo 0; fi; }
job_field() { scontrol show job "$jid" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
# wait_until SECONDS WHAT TEST...: polls TEST every 0.1 s.
wait_until() {
  local limit=$1 what=$2
  shift 2
  for _ in $(seq $((limit * 10))); do
    "$@" && return 0
    [ $SECONDS -lt $deadline ] || fail "the test ran past $((deadline - t0)) s waiting for $what"
    sleep 0.1
  done
  fail "waited $limit s for $what"
}
log_has() { grep -q -- "$1" "$log" 2>/dev/null; }
lines_at_least() { [ "$(lines)" -ge "$1" ]; }
state_is() { [ "$(job_field JobState)" = "$1" ]; }

cd "$work" || fail "cd $work"
jid=$(TPINFER_BIN=$bin TPINFER_LAUNCHER=$launcher sbatch --parsable --time=10 --output="$log" \
        "$src/jobs/slurm-job.sbatch" "$work/model.h5" "$work/in.jsonl" "$out" "${run_args[@]}") ||
  fail "sbatch"
say "submitted job $jid (jobs/slurm-job.sbatch, $launcher launches the ranks)"

wait_until 120 "the first results" lines_at_least $((total / 4))
at1=$(lines)
scontrol requeue "$jid" || fail "scontrol requeue $jid"
say "scontrol requeue at $at1/$total results"
wait_until 60 "the job to stop and wait for its next start" state_is PENDING
left1=$(lines)
[ "$left1" -lt $total ] || fail "the job finished before the requeue took effect (use more work)"
drains() { grep -c "^tpinfer: drained on signal" "$log"; }
status=$(sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p' "$out.manifest.json")
if [ "$status" = drained ] && [ "$(drains)" = 1 ] && log_has "exit 75 after SIGTERM"; then
  say "first start drained with $left1/$total results (exit 75); Slurm requeued the job"
elif [ "$launcher" = mpirun ]; then
  # mpirun, SIGTERMed too, kills its ranks 1 s later and takes their stderr
  # and exit codes with it; the manifest says whether they drained in time.
  say "first start ended with $left1/$total results (mpirun; manifest: $status);" \
    "Slurm requeued the job"
else
  fail "the ranks did not drain (exit 75) after the requeue (manifest: $status)"
fi

wait_until 120 "the second start" log_has "start 2 on"
wait_until 120 "the second start's results" lines_at_least $((left1 + total / 4))
at2=$(lines)
# What Slurm sends 120 s before the time limit (--signal=B:USR1@120).
scancel --batch --signal=USR1 "$jid" || fail "scancel --batch --signal=USR1 $jid"
say "USR1 to the batch shell at $at2/$total results (as before the time limit)"
wait_until 60 "the script to requeue the job" log_has "requeueing, restart 2"
left2=$(lines)
if ! sed -n '/start 2 on/,$p' "$log" | grep -q "^tpinfer: drained on signal 10" ||
  ! grep -q '"status": *"drained"' "$out.manifest.json"; then
  fail "the ranks did not drain on USR1"
fi
[ "$left2" -lt $total ] || fail "the job finished before USR1 took effect (use more work)"
say "second start drained with $left2/$total results (exit 75); the script requeued the job"

wait_until 180 "the job to complete" state_is COMPLETED
restarts=$(job_field Restarts) exit_code=$(job_field ExitCode)
[ "$restarts" = 2 ] || fail "scontrol shows Restarts=$restarts, want 2"
[ "$exit_code" = 0:0 ] || fail "the job's ExitCode=$exit_code, want 0:0"
starts=$(grep -c "^slurm-job: job $jid start" "$log")
[ "$starts" = 3 ] || fail "the job log shows $starts starts, want 3"
[ "$(grep -c "start [23] on .* --resume" "$log")" = 2 ] || fail "a restart did not pass --resume"

# 5. Complete and exact: every id once, every line as in the uninterrupted run.
n=$(lines)
dups=$(grep -o '^{"id":"[^"]*"' "$out" | sort | uniq -d | head -3)
[ -z "$dups" ] || fail "ids with more than one result: $dups"
[ "$n" = $total ] || fail "$n results, want $total"
if ! cmp -s <(sort "$out") <(sort "$work/ref.jsonl"); then
  differ=$(comm -13 <(sort "$work/ref.jsonl") <(sort "$out") | grep -o '^{"id":"[^"]*"' | head -5)
  fail "results differ from the uninterrupted run's: $differ"
fi
say "job $jid COMPLETED: 3 starts, Restarts=2, ExitCode 0:0;" \
  "$n results, each id once, identical to the uninterrupted run's"
say "PASSED in $((SECONDS - t0)) s"
passed=1
