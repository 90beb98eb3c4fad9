#!/usr/bin/env bash
# A tpinfer batch job on this machine, restarted on restartable failures.
# usage: jobs/mpirun-job.sh [--max-restarts N] NP MODEL INPUT OUTPUT [tpinfer run options...]
#   e.g. jobs/mpirun-job.sh 4 model.h5 prompts.jsonl out.jsonl --tp 2
# Every start after the first passes --resume, so nothing finished is redone
# and nothing is lost. It restarts on exit 75 (drained on a signal, a peer
# died, a collective failed) and when mpirun reports a rank killed by a signal
# (exit 128 + N: the OOM killer, a lost node, kill -9), at most --max-restarts
# times (default 3); exit 2 (bad input or model) and 1 stop at once. TPINFER_RESTART_NP, when
# set, is the rank count of the restarts (fewer GPUs after one went bad: the
# weights load for any TP size that divides the heads).
# Exit code: the last tpinfer run's.
set -uo pipefail
max_restarts=3
if [ "${1:-}" = --max-restarts ]; then max_restarts=$2; shift 2; fi
[ $# -ge 4 ] || { sed -n '2,12p' "$0"; exit 2; }
np=$1 model=$2 input=$3 output=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/tools/mpirun-env.sh"
bin=${TPINFER_BIN:-$here/build/tpinfer}

# A signal to this script reaches the ranks through mpirun; the ranks drain
# and exit 75, and then the script stops too instead of restarting.
stop=0
trap 'stop=1' TERM INT USR1

resume=()
# Continue an earlier, interrupted run of this script.
[ -s "$output" ] && [ -f "$output.manifest.json" ] && resume=(--resume)
attempt=0
while :; do
  mpirun -np "$np" "$bin" run --model "$model" --input "$input" --output "$output" \
    "${resume[@]}" "$@" &
  wait $!
  rc=$?
  # wait returns early when a trapped signal arrives: wait for mpirun itself.
  while kill -0 $! 2>/dev/null; do wait $!; rc=$?; done
  [ "$rc" -eq 75 ] || [ "$rc" -gt 128 ] || exit "$rc"
  [ "$stop" -eq 0 ] || { echo "mpirun-job: stopped by a signal; rerun this script to resume" >&2; exit 75; }
  attempt=$((attempt + 1))
  if [ "$attempt" -gt "$max_restarts" ]; then
    echo "mpirun-job: still restartable after $max_restarts restarts; giving up (exit 75)" >&2
    exit 75
  fi
  np=${TPINFER_RESTART_NP:-$np}
  echo "mpirun-job: exit $rc, restart $attempt of $max_restarts with --resume on $np ranks" >&2
  resume=(--resume)
done
