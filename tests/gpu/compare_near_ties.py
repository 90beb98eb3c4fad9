#!/usr/bin/env python3
"""Compares two result files of the same requests on the same model, where
bf16 kernels, another batching or another layout may legitimately flip a
greedy token at a near-tie, after which the sequences diverge. Every id must
be in both files exactly once. For each greedy request whose tokens differ,
the first difference must sit where the cpu backend's top-2 logit margin on
the shared prefix is <= --tie of the row's logit scale (`tpinfer logits`).
Sampled requests (temperature > 0) may flip on a sampling boundary instead,
which a margin cannot bound: at most --max-sampled-diffs of them may differ.

usage: compare_near_ties.py --tpinfer BIN --model M.h5 --input IN.jsonl A.jsonl B.jsonl
exit 0: equal up to near-ties; 1: not."""
import argparse
import array
import ast
import collections
import json
import subprocess
import sys
import tempfile


def load_npy_rows(path):
    """The rows of a 2-D little-endian float32 .npy file (what `tpinfer logits`
    writes), without numpy."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        n = int.from_bytes(f.read(2 if major == 1 else 4), "little")
        header = ast.literal_eval(f.read(n).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"] or len(header["shape"]) != 2:
            sys.exit(f"{path}: expected a C-order <f4 matrix, got {header}")
        rows, cols = header["shape"]
        data = array.array("f")
        data.fromfile(f, rows * cols)
    return [data[r * cols:(r + 1) * cols] for r in range(rows)]


def results(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    ids = collections.Counter(json.dumps(r["id"]) for r in rows)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        sys.exit(f"FAIL {path}: ids written more than once: {twice[:5]}")
    return {json.dumps(r["id"]): r for r in rows}


def first_difference(ta, tb):
    k = next((k for k, (x, y) in enumerate(zip(ta, tb)) if x != y), None)
    if k is None and len(ta) != len(tb):
        k = min(len(ta), len(tb))  # one stopped (EOS) where the other went on
    return k


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tpinfer", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--tie", type=float, default=2e-2)
    p.add_argument("--max-sampled-diffs", type=int, default=0)
    p.add_argument("a")
    p.add_argument("b")
    o = p.parse_args()
    prompts = {json.dumps(j["id"]): j for j in map(json.loads, open(o.input))}
    a, b = results(o.a), results(o.b)
    if set(a) != set(b) or set(a) != set(prompts):
        sys.exit(f"FAIL {o.a} vs {o.b}: ids differ (a {len(a)}, b {len(b)}, input {len(prompts)})")
    greedy, sampled = [], []
    for i in a:
        if "error" in a[i] or "error" in b[i]:
            if a[i] != b[i]:
                sys.exit(f"FAIL request {i}: error results differ: {a[i]} vs {b[i]}")
            continue
        k = first_difference(a[i]["tokens"], b[i]["tokens"])
        if k is None:
            continue
        (sampled if prompts[i].get("temperature", 0) > 0 else greedy).append((i, k))
    worst, failed = 0.0, False
    if greedy:
        with tempfile.TemporaryDirectory() as tmp:
            with open(f"{tmp}/prefix.jsonl", "w") as f:
                for n, (i, k) in enumerate(greedy):
                    f.write(json.dumps({"id": n, "prompt_tokens": prompts[i]["prompt_tokens"] +
                                        a[i]["tokens"][:k]}) + "\n")
            subprocess.run([o.tpinfer, "logits", "--backend", "cpu", "--model", o.model,
                            "--input", f"{tmp}/prefix.jsonl", "--output", f"{tmp}/prefix.npy",
                            "--positions", "last"], check=True, stdout=subprocess.DEVNULL)
            rows = load_npy_rows(f"{tmp}/prefix.npy")
        for n, (i, k) in enumerate(greedy):
            top = sorted(rows[n])[-2:]
            margin = (top[1] - top[0]) / max(abs(v) for v in rows[n])
            worst = max(worst, margin)
            if margin > o.tie:
                failed = True
                print(f"FAIL request {i} differs at token {k} where the cpu top-2 margin is "
                      f"{margin:.4f} of the logit scale (> {o.tie})")
    if len(sampled) > o.max_sampled_diffs:
        failed = True
        print(f"FAIL {len(sampled)} sampled requests differ (at most {o.max_sampled_diffs}): "
              f"{sampled[:5]}")
    tokens = sum(len(a[i].get("tokens", [])) for i in a)
    print(f"{o.a} vs {o.b}: {len(a)} requests ({tokens} tokens), "
          f"{len(a) - len(greedy) - len(sampled)} identical, {len(greedy)} greedy diverge at a "
          f"near-tie (largest margin {worst:.4f}), {len(sampled)} sampled differ")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
