#!/usr/bin/env bash
# Model load speed with and without checksum verification (docs/PERF.md,
# "Fingerprints and checksums"). Writes a seeded random model of CONFIG with
# make-model (Llama-3-8B shapes by default: a 16 GB bf16 file), then loads it
# with `tpinfer bench --scenarios ''` (load only) RUNS times with
# --verify-weights on and RUNS times off, interleaved, dropping the page cache
# before every load when it can (it says when it cannot: the numbers are then
# warm-cache ones). Prints each load and the medians: GB/s = file bytes /
# bench's load time (the shards read, verified, converted and uploaded).
#   tools/load-speed.sh [BUILD_DIR] [CONFIG.json]
# Env: MODEL (the file; default /tmp/load-speed-<config name>.h5, kept and reused
# when it exists: REWRITE=1 writes it again), RUNS (3), TP (1; TP > 1 runs under
# mpirun -np TP), BACKEND (auto), SEED (1), EXTRA (more bench options).
set -euo pipefail
build=${1:-build}
config=${2:-tools/configs/llama-3-8b.json}
runs=${RUNS:-3}
tp=${TP:-1}
name=$(basename "$config" .json)
model=${MODEL:-/tmp/load-speed-$name.h5}
bin="$build/tpinfer"
[ -x "$bin" ] || { echo "load-speed: no $bin (build first, or name the build folder)" >&2; exit 2; }
[ -f "$config" ] || { echo "load-speed: no config $config" >&2; exit 2; }

if [ ! -f "$model" ] || [ "${REWRITE:-0}" = 1 ]; then
  t0=$(date +%s.%N)
  "$bin" make-model --config "$config" --output "$model" --seed "${SEED:-1}"
  t1=$(date +%s.%N)
  awk -v b="$(stat -c %s "$model")" -v t0="$t0" -v t1="$t1" \
    'BEGIN { s = t1 - t0; printf "load-speed: wrote %.2f GB in %.1f s (%.2f GB/s, random values generated and hashed)\n", b / 1e9, s, b / 1e9 / s }'
fi
bytes=$(stat -c %s "$model")

drop_caches() {
  sync
  if { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then return 0; fi
  return 1
}
if drop_caches; then
  cache="cold (page cache dropped before every load)"
else
  cache="warm: could not drop the page cache (echo 3 > /proc/sys/vm/drop_caches needs root outside a container); the file stays cached after the first read"
  cat "$model" >/dev/null  # every load then finds the file cached, not only the later ones
fi
echo "load-speed: $model, $(awk -v b="$bytes" 'BEGIN { printf "%.2f GB", b / 1e9 }'), tp $tp, $cache"

launch=("$bin")
[ "$tp" -gt 1 ] && launch=(mpirun -np "$tp" "$bin")
# The smallest KV cache: the load, not the cache allocation, is measured.
load_once() {
  local verify=$1 out
  [ "$cache" = "${cache#cold}" ] || drop_caches
  out=$("${launch[@]}" bench --model "$model" --tp "$tp" --scenarios '' --backend "${BACKEND:-auto}" \
        --kv-blocks 64 --verify-weights "$verify" ${EXTRA:-} 2>&1) || {
    echo "$out" >&2
    echo "load-speed: tpinfer bench failed" >&2
    exit 1
  }
  sed -n 's/.*loaded in \([0-9.]*\) s.*/\1/p' <<<"$out" | head -1
}

declare -A times=([on]="" [off]="")
for i in $(seq 1 "$runs"); do
  for verify in on off; do
    s=$(load_once "$verify")
    [ -n "$s" ] || { echo "load-speed: no 'loaded in' line from tpinfer bench" >&2; exit 1; }
    times[$verify]+="$s "
    awk -v b="$bytes" -v s="$s" -v v="$verify" -v i="$i" \
      'BEGIN { printf "  run %d, verify %-3s: %.2f s, %.2f GB/s\n", i, v, s, b / 1e9 / s }'
  done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
on=$(median "${times[on]}")
off=$(median "${times[off]}")
awk -v b="$bytes" -v on="$on" -v off="$off" -v n="$runs" 'BEGIN {
  printf "load-speed: median of %d: verify on %.2f s = %.2f GB/s; verify off %.2f s = %.2f GB/s; verification costs %+.1f%% of the load time\n",
         n, on, b / 1e9 / on, off, b / 1e9 / off, (on - off) / off * 100 }'
