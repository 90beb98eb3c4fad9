#!/usr/bin/env python3
"""Token ids from Hugging Face `tokenizers` over a corpus of hard strings, for
tpinfer's C++ tokenizer to match (tests/unit/test_tokenizer_hf.cpp).

Two steps:
  1. --write-corpus (pure Python, any machine): writes the corpus
     tests/data/tokenizer/hard_strings.json: the strings of
     tools/tokenizer_fixtures/corpus.json plus the hard strings below (emoji and
     ZWJ sequences, CJK, combining marks, whitespace runs, digit runs, code,
     special-token text), and byte strings that are not valid UTF-8, each with
     Python's bytes.decode("utf-8", "replace") of it.
  2. NAME=TOKENIZER.json ... (needs `tokenizers`; the GPU machine has it):
     for each tokenizer writes OUT_DIR/hf_NAME.json with the ids of every string
     (add_special_tokens=False), decode(ids), whether decode(encode(s)) == s,
     and for the invalid byte strings the ids of their U+FFFD-replaced text.
     Exits 1 when a byte-level tokenizer does not round-trip a valid string.

Invalid UTF-8: Python strings (and so `tokenizers`) cannot hold it; text read
with errors="replace" becomes U+FFFD for each maximal invalid subsequence (as
Rust's String::from_utf8_lossy does). tpinfer's encoder reads invalid input
the same way, so its ids equal these for the raw bytes.

    python3 tools/tokenizer_compare.py --write-corpus
    python3 tools/tokenizer_compare.py --out-dir tests/data/tokenizer \\
        llama3=.cache/tokenizers/llama3/tokenizer.json gpt2=.cache/tokenizers/gpt2/tokenizer.json

  3. --bench BIN (needs `tokenizers` too): tpinfer's tokenizer (BIN is
     build/tests/tokenizer_bench) against `tokenizers` for each NAME=TOKENIZER.json:
     whether the ids of every corpus string are equal, and encode speed of both
     on the same text (--text FILE, else a mixed text made from this
     repository's docs and sources and the corpus, about --text-mb MB), one
     thread each, line by line, best of 3 runs after a warm-up (both keep a
     cache of words). Prints a markdown table; exits 1 when ids differ.

    python3 tools/tokenizer_compare.py --bench build/tests/tokenizer_bench \\
        llama3=build/tokenizers/llama3/tokenizer.json qwen3=build/tokenizers/qwen3/tokenizer.json
"""
import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata

CORPUS = "tests/data/tokenizer/hard_strings.json"
BASE_CORPUS = "tools/tokenizer_fixtures/corpus.json"

HARD_STRINGS = [
    # emoji: modifiers, ZWJ sequences, flags, keycaps, variation selectors
    "👩‍💻 👨🏿‍🚀 🏳️‍🌈 🏴‍☠️ 👁️‍🗨️ 🧑‍🤝‍🧑",
    "1️⃣ #️⃣ ☺️ ☺ ✌🏻 🇺🇸🇬🇧🇩🇪 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉",
    "I ❤️ NY — and 🍕 at 3am!",
    # CJK, kana, fullwidth and halfwidth forms, Hangul (precomposed and jamo)
    "東京タワーは高さ333メートルです。",
    "ｶﾀｶﾅ ﾊﾝｶｸ ＡＢＣ１２３ ｆｕｌｌｗｉｄｔｈ",
    "我爱北京天安门，天安门上太阳升。《红楼梦》",
    "한국어 한국어 (jamo)",
    "漢字かな交じり文、句読点。「引用」『二重』",
    # combining marks, canonical equivalents, compatibility characters
    "d\u0323\u0307 d\u0307\u0323 \u1e0b\u0323 q\u0307\u0323",
    "A\u030a \u00c5 \u212b \u2126 \u03a9 K \u212a",
    "Tiếng Việt có dấu: Trường Đại học",
    "नमस्ते दुनिया। हिन्दी",
    "สวัสดีครับ ภาษาไทย",
    "שָׁלוֹם עֲלֵיכֶם",
    "ﬁ ﬂ ﬀ Ǆ ǅ ǆ ß ẞ ı İ ς σ Σ",
    "Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0357\u0369",
    # whitespace runs, tabs, newlines, unusual spaces
    "a    b     c      d",
    "\t\t\tindented\twith\ttabs\t\t",
    "x\n\n\n\ny\r\n\r\nz\r\r",
    "   ",
    "\n",
    " \t \n \u00a0 \u2009 \u200a \u3000 ",
    "line\u2028separator\u2029paragraph",
    "trailing newline\n",
    "  two leading",
    # digit runs and numbers
    "1234567890123456789",
    "3.14159265358979323846 2.71828 -0.000001 1e-10 6.022e23",
    "0x1F4A9 0b1011 0o777 1_000_000",
    "12,345,678.90 $1,000.00 €2.50 ¥300 45% 3/4",
    "١٢٣٤٥ ۱۲۳ १२३४ ①②③ ⅠⅡⅢⅫ ½¾",
    "2024-05-01T12:34:56Z 23:59:59.999",
    "Call 555-0199 or +1 (555) 010-9999",
    # code
    "#include <vector>\ntemplate <typename T>\nstd::vector<T> f(const T& x) { return {x, x}; }\n",
    "def f(x: int) -> int:\n\treturn x ** 2  # square\n\n\nprint(f(3))\n",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b\\n"}}',
    "$ ls -la | grep foo && echo 'done' > /dev/null 2>&1",
    "^\\s*(\\w+)\\s*=\\s*\"([^\"]*)\"$",
    "https://example.com/path/to/page?q=1&r=two#frag user@example.org",
    "SELECT * FROM t WHERE a <> 'x' AND b >= 10;",
    "if(a&&b||!c){x<<=2;y>>>=1;}",
    # special-token text (matched as added tokens where the tokenizer has them)
    "<|begin_of_text|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
    "<|endoftext|><|endoftext|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n",
    "<s></s><unk> <s>text</s>",
    "<|begin_of_text",
    "<|not_a_token|> <<|eot_id|>> <|eot_id|<|eot_id|>",
    "[INST] question [/INST] answer",
    # apostrophes, quotes, dashes, repeats
    "It's don't I'M 'Tis rock'n'roll don’t “smart” ‘quotes’ «guillemets» „low“",
    "em—dash en–dash ellipsis… bullet • middle·dot",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!!!!!!!!!???????.......---------________",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # controls, private use, noncharacters, BOM, the replacement character itself
    "a\u0000b\u0001c\u001f\u007f",
    "\u001b[31mred\u001b[0m",
    "\ufeffBOM at start",
    "\ue000\uf8ff \U000f0000 \U0010fffd \ufffd \ufffe",
    "",
    ("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
     "election produced \"no evidence\" that any irregularities took place. The jury further "
     "said in term-end presentments that the City Executive Committee, which had over-all "
     "charge of the election, \"deserves the praise and thanks of the City of Atlanta\" for "
     "the manner in which the election was conducted."),
]

# Byte strings that are not valid UTF-8 (hex): lone and truncated sequences,
# overlongs, surrogates, out-of-range code points, mixed with valid text.
INVALID_UTF8 = [
    "ff", "80", "bf", "c0af", "c1bf", "e080af", "eda080", "edbfbf", "f4908080", "f8888080 80",
    "fe ff", "c3", "c3 28", "a0a1", "e228a1", "e28228", "e282", "f0288cbc", "f090288c", "f0288c28",
    "f09f98", "f09f98 f09f9880", "61 ff 62", "48656c6c6f20 ff 20776f726c6420 e282ac",
    "e282ac e282", "20 c3 20", "0a ff 0a", "f09fa4 f09fa4",
    "3c7c626567696e5f6f665f746578747c3e ff",  # "<|begin_of_text|>" then 0xFF
]


def hex_bytes(h):
    return bytes.fromhex(h.replace(" ", ""))


def write_corpus(path):
    with open(BASE_CORPUS, encoding="utf-8") as f:
        base = json.load(f)
    texts = list(base) + [s for s in HARD_STRINGS if s not in base]
    invalid = []
    for h in INVALID_UTF8:
        raw = hex_bytes(h)
        try:
            raw.decode("utf-8")
            sys.exit(f"tokenizer_compare: {h} is valid UTF-8; the invalid list must not hold it")
        except UnicodeDecodeError:
            pass
        invalid.append({"bytes_hex": raw.hex(), "lossy": raw.decode("utf-8", "replace")})
    doc = {
        "about": "Hard strings for tokenizer comparisons (tools/tokenizer_compare.py --write-corpus). "
                 "invalid_utf8: byte strings that are not UTF-8, with Python's "
                 "bytes.decode('utf-8', 'replace') of each.",
        "texts": texts,
        "invalid_utf8": invalid,
    }
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=0)
        f.write("\n")
    print(f"tokenizer_compare: {len(texts)} strings, {len(invalid)} invalid byte strings -> {path}")


# Strings whose encoding also gets the tokenizer's special tokens
# (encode(add_special_tokens=True): BOS where the post-processor adds one).
BOS_CASES = ["Hello", "", " leading space", "<|begin_of_text|>x", "<s>x"]


def compare(name, tok_path, corpus, out_dir):
    from tokenizers import Tokenizer  # the GPU machine has it; this machine need not
    import tokenizers

    tok = Tokenizer.from_file(tok_path)
    with open(tok_path, "rb") as f:
        raw = f.read()
    spec = json.loads(raw)
    pre = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("decoder"))
    byte_level = "ByteLevel" in pre
    nfc = "NFC" in json.dumps(spec.get("normalizer"))  # then only NFC text round-trips
    cases, failures = [], []
    for s in corpus["texts"]:
        ids = tok.encode(s, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        cases.append({"text": s, "ids": ids, "decoded": dec, "roundtrip": dec == s})
        if byte_level and dec != s and (not nfc or unicodedata.normalize("NFC", s) == s):
            failures.append(f"{name}: decode(encode(s)) != s for {s!r}: {dec!r}")
    invalid = []
    for c in corpus["invalid_utf8"]:
        ids = tok.encode(c["lossy"], add_special_tokens=False).ids
        invalid.append({"bytes_hex": c["bytes_hex"], "lossy": c["lossy"], "ids": ids,
                        "decoded": tok.decode(ids, skip_special_tokens=False)})
    bos = [{"text": s, "ids": tok.encode(s, add_special_tokens=True).ids} for s in BOS_CASES]
    doc = {
        "tokenizer": name,
        "generator": f"tokenizers {tokenizers.__version__} (Hugging Face), tools/tokenizer_compare.py",
        "tokenizer_json_bytes": len(raw),
        "tokenizer_json_sha256": hashlib.sha256(raw).hexdigest(),
        "post_processor": (spec.get("post_processor") or {}).get("type"),
        "cases": cases,
        "invalid_utf8": invalid,
        "with_special_tokens": bos,
    }
    out = os.path.join(out_dir, f"hf_{name}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    trips = sum(c["roundtrip"] for c in cases)
    print(f"{name:8s} {len(cases):4d} strings, decode(encode(s)) == s for {trips}, "
          f"{len(invalid)} invalid byte strings -> {out}")
    return failures


def bench_text(mb):
    """Mixed text of about `mb` MB: prose (docs), code (sources), and the corpus's
    multilingual strings, one line per line of text."""
    parts = []
    for pattern in ("docs/*.md", "README.md", "src/*/*.cpp", "src/*/*.hpp", "tools/*.py"):
        for path in sorted(glob.glob(pattern)):
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
    with open(CORPUS, encoding="utf-8") as f:
        multi = "\n".join(t.replace("\n", " ") for t in json.load(f)["texts"]) + "\n"
    base = "".join(parts)
    out, size, i = [], 0, 0
    while size < mb * 1e6:
        chunk = base[(i * 200_000) % max(1, len(base)):][:200_000] + multi * 10
        out.append(chunk)
        size += len(chunk.encode("utf-8"))
        i += 1
    return "".join(out)


def bench(bin_path, pairs, text_path, mb):
    os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its pool
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer
    import tokenizers

    with open(CORPUS, encoding="utf-8") as f:
        texts = json.load(f)["texts"]
    tmp = tempfile.mkdtemp(prefix="tokcmp")
    if not text_path:
        text_path = os.path.join(tmp, "mixed.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(bench_text(mb))
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    nbytes = sum(len(l.encode("utf-8")) for l in lines)
    rows, failed = [], False
    for name, path in pairs:
        tok = Tokenizer.from_file(path)
        want = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        got = subprocess.run([bin_path, "ids", path], check=True, capture_output=True, text=True,
                             input="".join(json.dumps(t) + "\n" for t in texts)).stdout
        got = [json.loads(l) for l in got.splitlines()]
        same = sum(a == b for a, b in zip(want, got)) if len(got) == len(want) else 0
        failed |= same != len(texts)
        out = subprocess.run([bin_path, "speed", path, text_path, "--repeat", "4"], check=True,
                             capture_output=True, text=True).stdout
        ours = float(re.match(r"([0-9.]+) MB/s", out).group(1))
        tok.encode_batch(lines, add_special_tokens=False)  # warm-up, as our best-of-4
        best = min(timed(lambda: tok.encode_batch(lines, add_special_tokens=False))
                   for _ in range(3))
        theirs = nbytes / best / 1e6
        rows.append((name, f"{same}/{len(texts)}", ours, theirs))
    print(f"encode speed, one thread, {nbytes / 1e6:.1f} MB of mixed text line by line; "
          f"tokenizers {tokenizers.__version__}\n")
    print("| tokenizer | ids equal | tpinfer MB/s | tokenizers MB/s | tpinfer / tokenizers |")
    print("|---|---|---|---|---|")
    for name, same, ours, theirs in rows:
        print(f"| {name} | {same} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")
    return 1 if failed else 0


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-corpus", action="store_true", help=f"write {CORPUS} and stop")
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--out-dir", default="tests/data/tokenizer")
    ap.add_argument("--bench", metavar="BIN", help="tpinfer's tokenizer_bench: compare and time")
    ap.add_argument("--text", help="--bench: the text to time (default: made up, see above)")
    ap.add_argument("--text-mb", type=float, default=4.0)
    ap.add_argument("tokenizers", nargs="*", metavar="NAME=TOKENIZER.json")
    args = ap.parse_args()
    if args.write_corpus:
        write_corpus(args.corpus)
        return 0
    if args.bench:
        pairs = [tuple(p.partition("=")[::2]) for p in args.tokenizers]
        if not pairs or any(not path for _, path in pairs):
            ap.error("--bench needs NAME=TOKENIZER.json pairs")
        return bench(args.bench, [(n, p) for n, p in pairs if os.path.exists(p)],
                     args.text, args.text_mb)
    if not args.tokenizers:
        ap.error("give NAME=TOKENIZER.json pairs (or --write-corpus)")
    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)
    os.makedirs(args.out_dir, exist_ok=True)
    failures = []
    for spec in args.tokenizers:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"{spec}: expected NAME=TOKENIZER.json")
        if not os.path.exists(path):
            print(f"{name:8s} skipped: {path} not found")
            continue
        try:
            failures += compare(name, path, corpus, args.out_dir)
        except Exception as e:  # one tokenizer `tokenizers` cannot load must not stop the rest
            failures.append(f"{name}: {type(e).__name__}: {e}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
