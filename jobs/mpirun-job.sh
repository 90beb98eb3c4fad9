#!/usr/bin/env bash
# A tpinfer batch job on this machine (or on the hosts TPINFER_MPIRUN_ARGS
# names), restarted on restartable failures.
# usage: jobs/mpirun-job.sh [--max-restarts N] NP MODEL INPUT OUTPUT [tpinfer run options...]
#   e.g. jobs/mpirun-job.sh 4 model.h5 prompts.jsonl out.jsonl --tp 2
# Every start after the first passes --resume, so nothing finished is redone
# and nothing is lost. It restarts, at most --max-restarts times (default 3), on
#   75         tpinfer: drained, a peer died or hung, a collective failed
#   128+N      mpirun: a rank was killed by signal N (OOM killer, kill -9)
#   205, 255   mpirun: it lost a host's daemon (205) or the ssh that started it (255)
# (mpirun's codes only once the job had started: its ranks wrote the manifest),
# and stops on anything else (0 done, 2 bad input or model, 1 other).
# SIGTERM, SIGINT (Ctrl-C), SIGHUP and SIGUSR1 to this script drain the job:
# it passes them to mpirun as SIGUSR1, which mpirun forwards to the ranks; they
# write what is finished and exit 75. The script then exits 75, prints the
# command that resumes, and does not restart by itself.
# TPINFER_BIN: the tpinfer binary (default build/tpinfer of this checkout).
# TPINFER_MPIRUN_ARGS: more mpirun options, split at white space (e.g. "--hostfile hosts").
# TPINFER_RESTART_NP: the rank count of the restarts (fewer GPUs after one went
#   bad: the weights load for any TP size that divides the heads).
# Exit code: 0 done; 75 restartable (stopped by a signal, or restarts used up);
# else the last mpirun's.
set -uo pipefail
max_restarts=3
if [ "${1:-}" = --max-restarts ]; then max_restarts=$2; shift 2; fi
[ $# -ge 4 ] || { sed -n '2,22p' "$0"; exit 2; }
# The command that picks this job up again (it passes --resume by itself).
resume_cmd=$(
  for v in TPINFER_BIN TPINFER_MPIRUN_ARGS TPINFER_RESTART_NP; do
    [ -z "${!v:-}" ] || printf '%s=%q ' "$v" "${!v}"
  done
  printf '%q ' "$0" --max-restarts "$max_restarts" "$@"
)
resume_cmd=${resume_cmd% }
np=$1 model=$2 input=$3 output=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/tools/mpirun-env.sh"
bin=${TPINFER_BIN:-$here/build/tpinfer}
# mpirun reports a binary it cannot start as 132, which reads like a rank
# killed by SIGILL: refuse here instead.
[ -x "$bin" ] || { echo "mpirun-job: $bin is not an executable file (set TPINFER_BIN)" >&2; exit 2; }
read -r -d "" -a mpirun_args <<<"${TPINFER_MPIRUN_ARGS:-}"  # at spaces and newlines

# mpirun runs in a session of its own (setsid), so that Ctrl-C, which the
# terminal sends to its whole foreground process group, reaches this script
# only. mpirun signalled itself (TERM, INT, HUP) would exit 1 and SIGKILL the
# ranks 2 s later (README "When mpirun itself is signalled"); USR1 it forwards
# to the ranks, which drain, and it then exits with their 75.
pid="" signal=""
on_signal() {
  if [ -z "$signal" ]; then
    echo "mpirun-job: SIG$1: passing it to the ranks as SIGUSR1; they finish their step," \
      "write what is done and exit 75" >&2
  fi
  signal=$1
  [ -z "$pid" ] || kill -USR1 "$pid" 2>/dev/null
}
# shellcheck disable=SC2064 # the name of each signal goes in now
for s in TERM INT HUP USR1; do trap "on_signal $s" "$s"; done

# Waits for mpirun across the trapped signals that interrupt `wait`; bash
# keeps the exit status of a child it has reaped, so the last wait returns it.
wait_mpirun() {
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  wait "$pid"
}

manifest_id() { stat -c '%i %y' "$output.manifest.json" 2>/dev/null; }
manifest_status() {
  sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p' "$output.manifest.json" 2>/dev/null | head -1
}
result_lines() { if [ -f "$output" ]; then wc -l <"$output"; else echo 0; fi; }

meaning() {
  case $1 in
    0) echo "done" ;;
    1) echo "mpirun itself was signalled, or an error the lines above name" ;;
    2) echo "usage, input or model error" ;;
    75) echo "tpinfer: restartable (drained, or a peer died or hung)" ;;
    205) echo "mpirun lost contact with a host's daemon" ;;
    255) echo "mpirun: a host's ssh (launch agent) ended, or mpirun failed" ;;
    *)
      if [ "$1" -gt 128 ] && [ "$1" -le 192 ]; then
        echo "a rank was killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
      else
        echo "mpirun's own error"
      fi
      ;;
  esac
}
# restartable RC STARTED: RC is a failure that --resume gets past. mpirun's
# codes count only when the ranks had started (STARTED=1): before that they
# mean a rank or host that could not start, which a restart does not mend.
restartable() {
  [ "$1" -eq 75 ] && return 0
  [ "$2" = 1 ] || return 1
  [ "$1" -eq 205 ] || [ "$1" -eq 255 ] || { [ "$1" -gt 128 ] && [ "$1" -le 192 ]; }
}

stopped() {  # stopped RC STARTED: the end after a signal the user sent
  local rc=$1 status
  status=$(manifest_status)
  if [ "$rc" -eq 0 ]; then
    echo "mpirun-job: SIG$signal came as the job finished: every result is in $output" >&2
    exit 0
  fi
  # rc 1 with the ranks drained or killed mid-step: mpirun got the signal too
  # (kill of the process group or cgroup, systemd's default KillMode). 128+N
  # before the ranks started: the USR1 came before mpirun or a rank could
  # catch it, and nothing had run.
  if restartable "$rc" "$2" || { [ "$rc" -eq 1 ] && { [ "$status" = drained ] || [ "$status" = running ]; }; } ||
    { [ "$2" = 0 ] && [ "$rc" -gt 128 ] && [ "$rc" -le 192 ]; }; then
    echo "mpirun-job: stopped by SIG$signal (mpirun exit $rc: $(meaning "$rc")); $(result_lines)" \
      "result lines in $output (manifest: ${status:-none}). Resume with:" >&2
    echo "  $resume_cmd" >&2
    exit 75
  fi
  echo "mpirun-job: stopped by SIG$signal; mpirun exit $rc: $(meaning "$rc")" >&2
  exit "$rc"
}

# Continue an earlier, interrupted run of this script (tpinfer refuses a
# second --resume, so not when the options carry one).
resume=() again=(--resume)
case " $* " in *" --resume "*) again=() ;; esac
[ -s "$output" ] && [ -f "$output.manifest.json" ] && resume=("${again[@]}")
attempt=0
while :; do
  if [ -n "$signal" ]; then
    [ -n "${rc:-}" ] || { echo "mpirun-job: SIG$signal before the job started" >&2; exit 75; }
    stopped "$rc" "$started"
  fi
  before=$(manifest_id)
  setsid mpirun "${mpirun_args[@]}" -np "$np" "$bin" run --model "$model" --input "$input" \
    --output "$output" "${resume[@]}" "$@" </dev/null &
  pid=$!
  # A signal between the fork and `pid=` found no pid to pass on.
  [ -z "$signal" ] || kill -USR1 "$pid" 2>/dev/null
  wait_mpirun
  rc=$?
  started=0
  [ "$(manifest_id)" = "$before" ] || started=1
  pid=""
  [ -z "$signal" ] || stopped "$rc" "$started"
  [ "$rc" -eq 0 ] && exit 0
  if ! restartable "$rc" "$started"; then
    when=""
    [ "$rc" -le 128 ] || [ "$started" = 1 ] || when=" before the ranks started"
    echo "mpirun-job: exit $rc ($(meaning "$rc"))$when: not restarting" >&2
    exit "$rc"
  fi
  attempt=$((attempt + 1))
  if [ "$attempt" -gt "$max_restarts" ]; then
    echo "mpirun-job: exit $rc ($(meaning "$rc")) after $max_restarts restarts; giving up" \
      "(exit 75). Resume with:" >&2
    echo "  $resume_cmd" >&2
    exit 75
  fi
  np=${TPINFER_RESTART_NP:-$np}
  echo "mpirun-job: exit $rc ($(meaning "$rc")), restart $attempt of $max_restarts with --resume on $np ranks" >&2
  resume=("${again[@]}")
done
