#!/usr/bin/env bash
# Two hosts on one machine: network and UTS namespaces (own hostname, own
# TMPDIR for OpenMPI's session files) joined by a bridge in a third namespace,
# mpirun on host A starting host B's daemon through a plm_rsh_agent that
# enters B's namespaces as ssh would (it stays on A, and exits 255 when the
# remote command is killed). Checks:
# 1. DP=2 x TP=2 across the hosts and TP=4 spanning both give exactly the
#    tokens of a run on one host.
# 2. jobs/mpirun-job.sh across both hosts, every process of host B killed
#    mid-run: mpirun's exit code is one the script restarts on, the script's
#    --resume runs on host A alone (the hostfile no longer names B), and the
#    output is the uninterrupted run's: every id once, the same tokens.
# usage: tests/launchers/multihost_test.sh TPINFER_BIN SOURCE_DIR
# Exit 0 passed, 1 failed, 77 skipped (not root, no unshare/nsenter/ip, or the
# kernel refuses namespaces or veth links here: says which).
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
name=multihost bin=$(realpath "$1") src=$(realpath "$2")
source "$src/tests/launchers/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to make network namespaces"
for cmd in unshare nsenter ip setsid; do
  command -v $cmd >/dev/null || skip "no $cmd (util-linux, iproute2)"
done
err=$(unshare --net --uts true 2>&1) || skip "cannot make network and UTS namespaces here: $err"

# 1. The namespaces, each held by a sleeping process; the cleanup ends them.
holders=()
cleanup_hosts() { for p in "${holders[@]}"; do kill -KILL "$p" 2>/dev/null; done; }
trap 'cleanup_hosts; lib_cleanup' EXIT
hold() {  # hold HOSTNAME|-: a process in new namespaces; prints its pid
  if [ "$1" = - ]; then unshare --net sleep 3600 >/dev/null 2>&1 &
  else unshare --net --uts sh -c "hostname $1 && exec sleep 3600" >/dev/null 2>&1 &
  fi
  echo $!
}
sw=$(hold -) ha=$(hold tpinfer-a) hb=$(hold tpinfer-b)
holders=("$sw" "$ha" "$hb")
sleep 0.2
in_ns() { local pid=$1; shift; nsenter -t "$pid" -n "$@"; }
err=$(in_ns "$sw" ip link add br0 type bridge 2>&1 && in_ns "$sw" ip link set br0 up 2>&1) ||
  skip "cannot make a bridge in a network namespace: $err"
n=1
for h in "$ha" "$hb"; do
  err=$(in_ns "$sw" ip link add "p$n" type veth peer name eth0 netns "$h" 2>&1) ||
    skip "cannot make a veth link between namespaces: $err"
  in_ns "$sw" ip link set "p$n" master br0 && in_ns "$sw" ip link set "p$n" up &&
    in_ns "$h" ip addr add "10.77.0.$n/24" dev eth0 && in_ns "$h" ip link set eth0 up &&
    in_ns "$h" ip link set lo up || fail "setting up host $n's network"
  mkdir -p "$work/tmp$n"
  n=$((n + 1))
done
addr_a=10.77.0.1 addr_b=10.77.0.2
[ "$(nsenter -t "$hb" -u hostname)" = tpinfer-b ] || fail "host B's hostname"

# As ssh does: this process stays on the launching host, the command runs on
# the named one (its namespaces and TMPDIR), 255 when a signal killed it.
cat >"$work/agent.sh" <<EOF
#!/usr/bin/env bash
host=\$1
shift
case \$host in
  $addr_a) pid=$ha tmp=$work/tmp1 ;;
  $addr_b) pid=$hb tmp=$work/tmp2 ;;
  *) echo "agent: no host \$host" >&2; exit 255 ;;
esac
echo "\$host" >>$work/agent.log
nsenter -t \$pid -n -u env TMPDIR=\$tmp sh -c "\$*"
rc=\$?
[ \$rc -le 128 ] || rc=255
exit \$rc
EOF
chmod 755 "$work/agent.sh"
mpirun_args="--mca plm_rsh_agent $work/agent.sh --mca btl tcp,vader,self
  --mca btl_vader_single_copy_mechanism none --mca oob_tcp_if_include 10.77.0.0/24
  --mca btl_tcp_if_include 10.77.0.0/24"
on_a() { nsenter -t "$ha" -n -u env TMPDIR="$work/tmp1" "$@"; }
say "hosts tpinfer-a ($addr_a) and tpinfer-b ($addr_b) on a bridge; mpirun on tpinfer-a"

# 2. One host, then across both.
readonly total=128
model=$src/inputs/demo-model.h5 in=$work/in.jsonl
make_input $total "$in"
run=(run --model "$model" --input "$in" --checkpoint-interval 0.1 --progress-interval 100 --max-batch 16)
layout() {  # layout NAME HOSTS TP: 4 ranks
  local s=$SECONDS
  log=$work/$1.log
  # shellcheck disable=SC2086
  on_a mpirun $mpirun_args --host "$2" -np 4 "$bin" "${run[@]}" --output "$work/$1.jsonl" \
    --tp "$3" >"$log" 2>&1 || fail "$1: mpirun exited $?"
  grep -q "4 ranks = dp $((4 / $3)) x tp $3" "$log" || fail "$1: not dp $((4 / $3)) x tp $3"
  say "$1: $(lines "$work/$1.jsonl") results in $((SECONDS - s)) s"
}
layout one-host "$addr_a:4" 2
layout dp2xtp2-across "$addr_a:2,$addr_b:2" 2
same=$(same_results "$work/one-host.jsonl" "$work/dp2xtp2-across.jsonl") ||
  fail "DP=2 x TP=2 across the hosts: $same"
say "DP=2 x TP=2 across the hosts: $same as on one host"
layout tp4-spanning "$addr_a:2,$addr_b:2" 4
same=$(same_results "$work/one-host.jsonl" "$work/tp4-spanning.jsonl") ||
  fail "TP=4 spanning both hosts: $same"
say "TP=4 spanning both hosts: $same as on one host"

# 3. Host B lost mid-run under jobs/mpirun-job.sh.
out=$work/out.jsonl log=$work/job.log
printf '%s slots=2\n%s slots=2\n' $addr_a $addr_b >"$work/hosts"
on_a env TPINFER_BIN="$bin" TPINFER_MPIRUN_ARGS="$mpirun_args --hostfile $work/hosts" \
  "$src/jobs/mpirun-job.sh" 4 "$model" "$in" "$out" "${run[@]:5}" --tp 2 >"$log" 2>&1 &
job=$!
wait_until 120 "the first results" lines_at_least "$out" $((total / 8))
# B's ranks must be running: ranks 2 and 3 (TP group 1) live there.
ns_b=$(readlink "/proc/$hb/ns/net")
on_b=()
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns_b" ] && on_b+=("${p#/proc/}")
done
ranks_b=$(for p in "${on_b[@]}"; do cat "/proc/$p/comm" 2>/dev/null; done | grep -cx tpinfer)
[ "$ranks_b" = 2 ] || fail "host B runs $ranks_b tpinfer ranks, want 2"
# What an operator does before the restart: the hostfile no longer names B.
printf '%s slots=4\n' $addr_a >"$work/hosts"
at=$(lines "$out") launched_b=$(grep -cx $addr_b "$work/agent.log")
kill -KILL "${on_b[@]}"
say "killed every process of host B (${#on_b[@]}: its daemon, 2 ranks, ...) at $at/$total results"
wait "$job"
rc=$?
[ "$rc" = 0 ] || fail "jobs/mpirun-job.sh exited $rc"
lost=$(sed -n 's/^mpirun-job: exit \([0-9]*\) (\(.*\)), restart 1 of 3 with --resume on 4 ranks$/\1: \2/p' "$log")
[ -n "$lost" ] || fail "the script did not restart after host B was lost"
say "mpirun exited $lost; the script restarted with --resume"
grep -q "4 ranks = dp 2 x tp 2" <(sed -n '/restart 1 of 3/,$p' "$log") || fail "the restart's layout"
resumed=$(sed -n 's/.*Results: .* (\([0-9]*\) more from the earlier run)$/\1/p' "$log" | tail -1)
[ -n "$resumed" ] && [ "$resumed" -lt $total ] ||
  fail "the restart did not resume an unfinished output (earlier results: ${resumed:-none})"
# The restart ran on host A alone: no daemon was started on B after the kill.
[ "$(grep -cx $addr_b "$work/agent.log")" = "$launched_b" ] || fail "the restart started a daemon on B"
[ "$(manifest_status "$out")" = "done" ] || fail "manifest: $(manifest_status "$out"), want done"
same=$(same_results "$work/one-host.jsonl" "$out") || fail "after the lost host: $same"
say "resumed on host A alone from $resumed results: $same as the uninterrupted run"
say "PASSED in $((SECONDS - t0)) s"
passed=1
