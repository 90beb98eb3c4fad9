#!/usr/bin/env python3
"""Writes a seeded benchmark workload as tpinfer request lines (JSONL).

Fixed shapes:   make_workload.py --n 256 --isl 1000 --osl 1000 > w.jsonl
Mixed lengths:  make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 > mixed.jsonl

Lengths are drawn uniformly from the ranges, token ids uniformly from
[3, vocab); every request has ignore_eos so it generates exactly its OSL.
tpinfer bench --workload and tools/hf_baseline.py --workload read the same file.
"""
import argparse
import json
import random
import sys


def length_range(text):
    lo, _, hi = text.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"bad length range {text!r}")
    return lo, hi


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=256, help="requests")
    p.add_argument("--isl", type=length_range, default=(64, 2048), help="prompt length or range A-B")
    p.add_argument("--osl", type=length_range, default=(32, 512), help="output length or range A-B")
    p.add_argument("--vocab", type=int, default=128256, help="token ids are drawn from [3, vocab)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    out = sys.stdout
    for i in range(a.n):
        isl = rng.randint(*a.isl)
        osl = rng.randint(*a.osl)
        prompt = [rng.randrange(3, a.vocab) for _ in range(isl)]
        out.write(json.dumps({"id": f"w{i}", "prompt_tokens": prompt, "max_new_tokens": osl,
                              "ignore_eos": True}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
