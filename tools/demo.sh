#!/usr/bin/env bash
# Builds tpinfer (tools/build.sh) and runs the demo job: 2 MPI ranks (TP=2,
# cpu backend when there is no GPU) over the trained demo model
# (inputs/demo-model.h5, its tokenizer inside) and the text prompts of
# inputs/prompts-text.jsonl; prints the first few prompts and continuations.
# --no-build runs an already built tpinfer (BUILD_DIR, default build/), as the
# demo's job test does.
# usage: tools/demo.sh [--no-build] [OUTPUT]   (default out/demo.jsonl)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_first=1
if [ "${1:-}" = --no-build ]; then
  build_first=0
  shift
fi
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
  echo "demo: usage: tools/demo.sh [--no-build] [OUTPUT]" >&2
  exit 2
fi
build=${BUILD_DIR:-$root/build}
out=${1:-$root/out/demo.jsonl}
[ $build_first = 1 ] && bash "$root/tools/build.sh"
source "$root/tools/mpirun-env.sh"
mkdir -p "$(dirname "$out")"
rm -f "$out"  # the demo starts fresh; tpinfer itself never overwrites results
mpirun -np 2 "$build/tpinfer" run --model "$root/inputs/demo-model.h5" \
  --input "$root/inputs/prompts-text.jsonl" --output "$out" --tp 2
echo "demo: $(wc -l <"$out") results in $out"
python3 - "$root/inputs/prompts-text.jsonl" "$out" <<'PY'
import json, sys
prompts = {json.loads(l)["id"]: json.loads(l)["prompt"] for l in open(sys.argv[1])}
for line in list(open(sys.argv[2]))[:5]:
    r = json.loads(line)
    print(f"{prompts[r['id']]!r} -> {r.get('text', r.get('error'))!r}")
PY
