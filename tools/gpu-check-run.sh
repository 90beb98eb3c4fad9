#!/usr/bin/env bash
# On the GPU machine: the gpu tests, then the demo job on the cuda backend and
# on the cpu backend, and how often their greedy tokens agree (bf16 against fp32
# on a random model: tokens agree until a near-tie flips, then diverge).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
source .gpu-kit/env.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DBoost_DIR="$BOOST_KIT_DIR" -DTPINFER_CUDA=ON >"$OUT/configure.log" 2>&1 || exit 1
cmake --build build-gpu -j 16 >"$OUT/build.log" 2>&1 || { grep -A3 error "$OUT/build.log" | head -40; exit 1; }
(cd build-gpu && ctest -L gpu --output-on-failure >"$OUT/gpu_tests.log" 2>&1)
grep -E "tests passed|Failed" "$OUT/gpu_tests.log"
B=build-gpu/tpinfer
$B make-model --config inputs/demo-config.json --output /tmp/demo.h5 --seed 1 --dtype float32 >/dev/null
for be in cuda cpu; do
  rm -f /tmp/$be.jsonl*
  mpirun --allow-run-as-root -np 2 $B run --backend $be --model /tmp/demo.h5 \
    --input inputs/prompts.jsonl --output /tmp/$be.jsonl --tp 2 --max-new-tokens 32 2>&1 | grep "done:"
done
python3 - <<'PY'
import json
a = {j["id"]: j for j in map(json.loads, open("/tmp/cuda.jsonl"))}
b = {j["id"]: j for j in map(json.loads, open("/tmp/cpu.jsonl"))}
greedy = [i for i in a if i in b and "temperature" not in json.dumps(i)]
first = sum(a[i]["tokens"][:1] == b[i]["tokens"][:1] for i in a)
same = sum(a[i]["tokens"] == b[i]["tokens"] for i in a)
prefix = sum(next((k for k, (x, y) in enumerate(zip(a[i]["tokens"], b[i]["tokens"])) if x != y),
                  len(a[i]["tokens"])) for i in a)
total = sum(len(a[i]["tokens"]) for i in a)
print(f"cuda vs cpu over {len(a)} requests: first token equal {first}, all tokens equal {same}, "
      f"common prefix {prefix}/{total} tokens")
PY
