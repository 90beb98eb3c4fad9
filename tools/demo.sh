#!/usr/bin/env bash
# Builds tpinfer and runs the demo job (2 MPI ranks, cpu backend when there is
# no GPU). Results: out/demo.jsonl; the first few prompts and their
# continuations are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
bash tools/run-demo.sh
python3 - <<'PY'
import json
prompts = {json.loads(l)["id"]: json.loads(l)["prompt"] for l in open("inputs/prompts-text.jsonl")}
for line in list(open("out/demo.jsonl"))[:5]:
    r = json.loads(line)
    print(f"{prompts[r['id']]!r} -> {r.get('text', r.get('error'))!r}")
PY
