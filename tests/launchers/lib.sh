# Sourced by the tests in tests/launchers: a private folder, the workload, and
# the checks. The test sets `name`, `bin` (tpinfer) and `src` (source tree)
# first. Exit codes: 0 passed, 1 failed, 77 skipped.
# shellcheck shell=bash disable=SC2154 # name, bin and src come from the test
t0=$SECONDS
passed=0
say() { echo "$name [$((SECONDS - t0))s]: $*"; }
skip() { say "SKIPPED: $*"; exit 77; }
fail() {
  say "FAIL: $*"
  if [ -n "${log:-}" ] && [ -f "$log" ]; then echo "--- $log (last 30 lines)"; tail -n 30 "$log"; fi
  exit 1
}
command -v mpirun >/dev/null || skip "no mpirun on PATH"
command -v python3 >/dev/null || skip "no python3 (the results are compared with it)"
work=$(mktemp -d "${TMPDIR:-/tmp}/tpinfer-launch.XXXXXX")
# Processes of this test still running: their command line names its folder.
own_processes() { pgrep -f "$work/" | grep -vx "$$" || true; }
lib_cleanup() {
  set +e
  for p in $(own_processes); do kill -KILL "$p" 2>/dev/null; done
  if [ "$passed" = 1 ] && [ -z "${TPINFER_TEST_KEEP:-}" ]; then rm -rf "$work"
  else say "files kept in $work"; fi
}
trap lib_cleanup EXIT
trap 'exit 130' INT TERM HUP
# shellcheck source=tools/mpirun-env.sh
source "$src/tools/mpirun-env.sh"
# Ranks outnumber the cores in CI: let them yield in collectives, one thread each.
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1

# make_input N FILE: N greedy requests (exact across restarts and layouts) of
# 8 to 67 prompt tokens and 16 to 48 new ones.
make_input() {
  awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) {
    p = ""; for (t = 0; t < 8 + (i * 13) % 60; t++) p = p (t ? ", " : "") 3 + (i * 31 + t * 7) % 4000
    printf "{\"id\": \"r%03d\", \"prompt_tokens\": [%s], \"max_new_tokens\": %d, \"ignore_eos\": true}\n",
           i, p, 16 + (i * 17) % 33 } }' >"$2"
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
manifest_status() { sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p' "$1.manifest.json" 2>/dev/null | head -1; }
# wait_until SECONDS WHAT TEST...: polls TEST every 0.05 s.
wait_until() {
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 20; i++)); do
    "$@" && return 0
    sleep 0.05
  done
  fail "waited $limit s for $what"
}
lines_at_least() { [ "$(lines "$1")" -ge "$2" ]; }
no_own_processes() { [ -z "$(own_processes)" ]; }
# same_results REF OUT: OUT answers every request of REF once, with the same tokens.
same_results() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
def load(path):
    by_id = {}
    for n, line in enumerate(open(path), 1):
        r = json.loads(line)
        if "id" not in r or "tokens" not in r:
            sys.exit(f"{path}:{n}: not a result: {line.strip()[:120]}")
        key = json.dumps(r["id"])
        if key in by_id:
            sys.exit(f"{path}:{n}: id {key} written twice")
        by_id[key] = r
    return by_id
ref, out = load(sys.argv[1]), load(sys.argv[2])
missing = sorted(set(ref) - set(out))
extra = sorted(set(out) - set(ref))
differ = sorted(k for k in ref if k in out and ref[k]["tokens"] != out[k]["tokens"])
if missing or extra or differ:
    sys.exit(f"{len(missing)} ids missing {missing[:3]}, {len(extra)} unexpected {extra[:3]}, "
             f"{len(differ)} with other tokens {differ[:3]}")
print(f"{len(out)} results, every id once, the same tokens")
EOF
}
