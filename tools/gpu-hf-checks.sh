#!/usr/bin/env bash
# On the GPU machine (kind nvidia-h200 or nvidia-h100-x1), from the checkout
# root, with .gpu-kit, .cache/brown.txt and .cache/tokenizers carried (made here
# by: ../shared/gpu/make-kit.sh; python3 tools/prepare_brown.py --fetch;
# bash tools/tokenizer_fixtures/fetch_tokenizers.sh .cache/tokenizers), in one go:
#   1. trains the demo model (tools/train_demo.py, in the background) while
#      tpinfer builds;
#   2. tokenizer ids from Hugging Face `tokenizers` over the hard strings
#      (tools/tokenizer_compare.py) and the C++ tokenizer tests against them;
#   3. the CI fixtures (tools/hf_compare.py --write-fixtures) and the C++
#      fixture and logits tests on them;
#   4. tools/hf_compare.py: cpu fp32 and cuda bf16 logits against transformers
#      at TP 1 and 2 on seeded models and on the trained demo model;
#   5. the trained model converted and run on inputs/prompts-text.jsonl.
# What comes back ($OUT, at most 8 files): demo-model.tar (the Hugging Face
# directory, to convert into inputs/ here), checks.tar.gz (paths relative to
# the repository root: tests/data/hf_fixtures/, tests/data/tokenizer/hf_*.json,
# out/hf-checks/ with logs, results and the demo's output), summary.txt.
# Env: TRAIN_SECONDS (default 150), SKIP_TRAIN=1, JOBS (build parallelism, 16).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
R=out/hf-checks            # everything small, packed into checks.tar.gz at the end
rm -rf "$R" && mkdir -p "$R"
source .gpu-kit/env.sh
export PYTHONUNBUFFERED=1
summary() { echo "$*" | tee -a "$R/summary.txt"; }
# Packs what exists so far after every stage, so a call cut off at its time
# limit still brings back the stages that finished.
pack() {
  local paths=("$R")
  [ -d tests/data/hf_fixtures ] && paths+=(tests/data/hf_fixtures)
  for f in tests/data/tokenizer/hf_*.json; do [ -e "$f" ] && paths+=("$f"); done
  tar czf "$OUT/checks.tar.gz" "${paths[@]}"
  cp "$R/summary.txt" "$OUT/summary.txt"
}
t0=$(date +%s)
for f in .cache/brown.txt .cache/tokenizers/llama3/tokenizer.json; do
  [ -s "$f" ] || summary "missing $f (carry .cache/brown.txt and .cache/tokenizers)"
done

# 1. Training runs on the GPU while the build uses the CPUs.
DEMO=/tmp/demo-model
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  rm -rf "$DEMO"
  python3 tools/train_demo.py --text .cache/brown.txt --output "$DEMO" \
    --time-budget "${TRAIN_SECONDS:-150}" >"$R/train.log" 2>&1 &
  train_pid=$!
fi
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DBoost_DIR="$BOOST_KIT_DIR" -DTPINFER_CUDA=ON >"$R/configure.log" 2>&1 ||
  { tail -30 "$R/configure.log"; exit 1; }
cmake --build build-gpu -j "${JOBS:-16}" >"$R/build.log" 2>&1 ||
  { grep -E "error" -A3 "$R/build.log" | head -60; exit 1; }
summary "build: $(( $(date +%s) - t0 )) s"
B=build-gpu/tpinfer

# 2. Tokenizers: expected ids from Hugging Face tokenizers, then the C++ tests on them.
T=tests/data/tokenizer
python3 tools/tokenizer_compare.py --out-dir "$T" \
  tiny_gpt2=$T/tiny_gpt2.tokenizer.json tiny_llama3=$T/tiny_llama3.tokenizer.json \
  tiny_llama2=$T/tiny_llama2.tokenizer.json gpt2=.cache/tokenizers/gpt2/tokenizer.json \
  llama3=.cache/tokenizers/llama3/tokenizer.json llama2=.cache/tokenizers/llama2/tokenizer.json \
  qwen3=.cache/tokenizers/qwen3/tokenizer.json >"$R/tokenizer_compare.log" 2>&1
summary "tokenizer_compare.py: exit $? ($(grep -c '' "$R/tokenizer_compare.log") lines, see tokenizer_compare.log)"
TPINFER_TOKENIZER_DIR=$PWD/.cache/tokenizers build-gpu/tests/tpinfer_unit_tests \
  --gtest_filter='*Tokenizer*:*Nfc*' >"$R/tokenizer_tests.log" 2>&1
summary "C++ tokenizer tests: exit $?; $(grep -E '^\[ hf ' "$R/tokenizer_tests.log" | sed 's/^\[ hf *\] //' | tr '\n' ';')"
grep -E "PASSED|FAILED" "$R/tokenizer_tests.log" | tail -12 | tee -a "$R/summary.txt"
pack

# 3. CI fixtures, then the fixture and logits job tests (cpu backend).
python3 tools/hf_compare.py --write-fixtures tests/data/hf_fixtures >"$R/fixtures.log" 2>&1
summary "fixtures: exit $?; $(grep '^fixture' "$R/fixtures.log" | tr '\n' ';')"
build-gpu/tests/tpinfer_job_tests --gtest_filter='HfFixtures*:Logits*' >"$R/job_tests.log" 2>&1
summary "fixture + logits job tests: exit $?"
grep -E "^\[ (hf|logits) |PASSED|FAILED" "$R/job_tests.log" | tee -a "$R/summary.txt"
pack

# 4. Logits against transformers (waits for the trained model).
if [ -n "${train_pid:-}" ]; then
  wait "$train_pid"
  summary "training: exit $?; $(tail -1 "$R/train.log")"
  cp "$DEMO/train_result.json" "$R/" 2>/dev/null
  [ -s "$DEMO/model.safetensors" ] && tar cf "$OUT/demo-model.tar" -C /tmp demo-model
  pack
fi
trained=()
[ -s "$DEMO/model.safetensors" ] && trained=(--trained "$DEMO")
python3 tools/hf_compare.py --tpinfer $B --work /tmp/hfc --json "$R/hf_compare.json" "${trained[@]}" \
  2>&1 | grep --line-buffered -v -i warning >"$R/hf_compare.log"
summary "hf_compare.py: exit ${PIPESTATUS[0]}"
sed -n '/^| model/,$p' "$R/hf_compare.log" | tee -a "$R/summary.txt"
pack

# 5. The demo: the trained model converted (bf16) and run on text prompts.
if [ -s "$DEMO/model.safetensors" ]; then
  $B convert --quiet --hf "$DEMO" --output /tmp/demo-model.h5 --dtype bf16 >"$R/demo_convert.log" 2>&1
  summary "demo model: $(tail -3 "$R/demo_convert.log" | head -1)"
  rm -f "$R/demo-text.jsonl"
  mpirun --allow-run-as-root -np 1 $B run --model /tmp/demo-model.h5 --input inputs/prompts-text.jsonl \
    --output "$R/demo-text.jsonl" >"$R/demo_run.log" 2>&1
  summary "demo run: exit $?; $(grep 'done:' "$R/demo_run.log")"
  python3 - "$R/demo-text.jsonl" <<'PY' | tee -a "$R/summary.txt"
import json, sys
prompts = {json.loads(l)["id"]: json.loads(l)["prompt"] for l in open("inputs/prompts-text.jsonl")}
for line in list(open(sys.argv[1]))[:6]:
    j = json.loads(line)
    print(f"  {prompts.get(j['id'], '?')!r} -> {j.get('text', j.get('error'))!r}")
PY
fi

summary "total: $(( $(date +%s) - t0 )) s"
pack
ls -la "$OUT"
