#!/usr/bin/env python3
"""Writes a seeded benchmark workload as tpinfer request lines (JSONL).

Every request has ignore_eos, so it generates exactly its output length; token
ids are drawn uniformly from [3, vocab). The same --seed gives the same file.
tpinfer bench --workload and tools/hf_baseline.py --workload read the same file.

--kind random (the default): independent prompts, nothing shared.
  Fixed shapes:   make_workload.py --n 256 --isl 1000 --osl 1000 > w.jsonl
  Mixed lengths:  make_workload.py --n 256 --isl 64-2048 --osl 32-512 --seed 0 > mixed.jsonl

The other kinds repeat prompt prefixes, as offline files do (what the prefix
cache reuses). --isl is then the length of each request's own part, after the
shared prefix:

--kind fewshot: an evaluation's few-shot prompts. --prefixes preambles of
  --prefix-len tokens each (default 5 of 1500); each of the --n requests
  (default 2000) is one preamble (round robin) followed by a question of --isl
  tokens (default 60), and generates --osl tokens (default 8). Shuffled.
    make_workload.py --kind fewshot > fewshot.jsonl

--kind system-prompt: a chat file. One system prompt of --prefix-len tokens
  (default 500) before each of --n (default 1000) user turns of --isl tokens
  (default 32-512), each generating --osl tokens (default 128).
    make_workload.py --kind system-prompt > system.jsonl

--kind multiturn: multi-turn conversations. --n conversations (default 100) of
  --turns turns (default 2-8); the k-th request of a conversation is its turns
  1..k-1 (each a user message of --isl tokens, default 32-256, and the
  assistant's reply of that earlier request's output length) and then user
  message k; it generates --osl tokens (default 64-256). A conversation's
  requests may start from a system prompt of --prefix-len tokens shared by all
  (default 0: none). Shuffled.
    make_workload.py --kind multiturn > multiturn.jsonl

--kind sharegpt: chat traffic shaped like ShareGPT, the data set serving
  benchmarks replay. --n requests (default 1000), each an independent prompt
  (nothing shared) whose prompt and output lengths are drawn from lognormal
  distributions with means --isl-mean (default 250) and --osl-mean (default
  200) tokens and a log standard deviation of 1.0 each, rounded and clipped to
  --isl (default 4-4096) and --osl (default 4-2048). Why 1.0: ShareGPT's
  lengths span two orders of magnitude with a long right tail; sigma 1.0 puts
  the median at 0.61 of the mean (about 150 in, 120 out), 5% of requests below
  a fifth of the median and 5% above 5x it (about 790 in, 630 out), and about
  1.7% of outputs at 1,000 tokens or more (11 of seed 0's 1,000): those are
  the tail that decodes almost alone at the end of an offline run. The clip bounds
  keep prompts inside an 8K context and cut only the far tail (0.05% of
  prompts, 0.24% of outputs), so the means stay within 1% of their targets
  (249.4 and 198.1 over a million draws).
    make_workload.py --kind sharegpt > sharegpt.jsonl

--no-shuffle keeps the order in which the requests are made (fewshot: the
preambles in turn; multiturn: conversation by conversation), for comparing an
order-blind scheduler. Ids say the structure: w<i> (random, system-prompt,
sharegpt), p<preamble>-q<i> (fewshot), c<conversation>-t<turn> (multiturn).
"""
import argparse
import json
import math
import random
import sys

# Per kind: (requests, own part's length, output length, shared prefix length).
DEFAULTS = {
    "random": (256, (64, 2048), (32, 512), 0),
    "fewshot": (2000, (60, 60), (8, 8), 1500),
    "system-prompt": (1000, (32, 512), (128, 128), 500),
    "multiturn": (100, (32, 256), (64, 256), 0),
    "sharegpt": (1000, (4, 4096), (4, 2048), 0),  # the lengths: clip ranges of lognormal draws
}
# sharegpt: the log standard deviation of both lengths (see the help text).
SHAREGPT_SIGMA = 1.0


def length_range(text):
    lo, _, hi = text.partition("-")
    try:
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad length range {text!r}: expected N or A-B")
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"bad length range {text!r}: need 1 <= A <= B")
    return lo, hi


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return v


def request(rid, prompt, osl):
    return {"id": rid, "prompt_tokens": prompt, "max_new_tokens": osl, "ignore_eos": True}


def tokens(rng, n, vocab):
    return [rng.randrange(3, vocab) for _ in range(n)]


def random_kind(a, rng):
    out = []
    for i in range(a.n):
        isl = rng.randint(*a.isl)
        osl = rng.randint(*a.osl)
        out.append(request(f"w{i}", tokens(rng, isl, a.vocab), osl))
    return out


def fewshot_kind(a, rng):
    preambles = [tokens(rng, a.prefix_len, a.vocab) for _ in range(a.prefixes)]
    out = []
    for i in range(a.n):
        p = i % a.prefixes
        question = tokens(rng, rng.randint(*a.isl), a.vocab)
        out.append(request(f"p{p}-q{i}", preambles[p] + question, rng.randint(*a.osl)))
    return out


def system_prompt_kind(a, rng):
    system = tokens(rng, a.prefix_len, a.vocab)
    return [request(f"w{i}", system + tokens(rng, rng.randint(*a.isl), a.vocab),
                    rng.randint(*a.osl)) for i in range(a.n)]


def multiturn_kind(a, rng):
    system = tokens(rng, a.prefix_len, a.vocab)
    out = []
    for c in range(a.n):
        history = list(system)
        for k in range(rng.randint(*a.turns)):
            history += tokens(rng, rng.randint(*a.isl), a.vocab)
            osl = rng.randint(*a.osl)
            out.append(request(f"c{c}-t{k + 1}", list(history), osl))
            # The reply as the next turn repeats it: as long as this request's output.
            history += tokens(rng, osl, a.vocab)
    return out


def lognormal_length(rng, mean, bounds):
    # mu so that the unclipped distribution's mean is `mean`: E = exp(mu + sigma^2 / 2).
    mu = math.log(mean) - SHAREGPT_SIGMA ** 2 / 2
    lo, hi = bounds
    return min(hi, max(lo, round(rng.lognormvariate(mu, SHAREGPT_SIGMA))))


def sharegpt_kind(a, rng):
    out = []
    for i in range(a.n):
        isl = lognormal_length(rng, a.isl_mean, a.isl)
        osl = lognormal_length(rng, a.osl_mean, a.osl)
        out.append(request(f"w{i}", tokens(rng, isl, a.vocab), osl))
    return out


KINDS = {"random": random_kind, "fewshot": fewshot_kind, "system-prompt": system_prompt_kind,
         "multiturn": multiturn_kind, "sharegpt": sharegpt_kind}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=list(KINDS), default="random", help="workload shape (see above)")
    p.add_argument("--n", type=positive, help="requests (multiturn: conversations)")
    p.add_argument("--isl", type=length_range, help="prompt length or range A-B (after any shared prefix)")
    p.add_argument("--osl", type=length_range, help="output length or range A-B")
    p.add_argument("--isl-mean", type=float,
                   help="sharegpt: mean prompt length (tokens) of the lognormal draw")
    p.add_argument("--osl-mean", type=float,
                   help="sharegpt: mean output length (tokens) of the lognormal draw")
    p.add_argument("--prefix-len", type=int, help="tokens of each shared prefix (preamble, system prompt)")
    p.add_argument("--prefixes", type=positive, default=5, help="fewshot: preambles")
    p.add_argument("--turns", type=length_range, default=(2, 8), help="multiturn: turns per conversation")
    p.add_argument("--no-shuffle", action="store_true", help="keep the requests in the order made")
    p.add_argument("--vocab", type=int, default=128256, help="token ids are drawn from [3, vocab)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n, isl, osl, prefix_len = DEFAULTS[a.kind]
    a.n = a.n or n
    a.isl = a.isl or isl
    a.osl = a.osl or osl
    a.prefix_len = prefix_len if a.prefix_len is None else a.prefix_len
    if a.vocab < 4:
        p.error("--vocab must be >= 4")
    if a.prefix_len < 0 or (a.kind in ("fewshot", "system-prompt") and a.prefix_len < 1):
        p.error(f"--prefix-len must be >= {1 if a.kind in ('fewshot', 'system-prompt') else 0} "
                f"for --kind {a.kind}")
    if a.kind in ("random", "sharegpt") and a.prefix_len:
        p.error(f"--prefix-len is for the shared-prefix kinds, not --kind {a.kind}")
    if a.kind != "sharegpt" and (a.isl_mean is not None or a.osl_mean is not None):
        p.error("--isl-mean and --osl-mean are for --kind sharegpt")
    if a.kind == "sharegpt":
        a.isl_mean = 250.0 if a.isl_mean is None else a.isl_mean
        a.osl_mean = 200.0 if a.osl_mean is None else a.osl_mean
        for name, mean, (lo, hi) in (("--isl-mean", a.isl_mean, a.isl),
                                     ("--osl-mean", a.osl_mean, a.osl)):
            if not lo <= mean <= hi:
                p.error(f"{name} {mean:g} must lie in its clip range {lo}-{hi}")
    rng = random.Random(a.seed)
    reqs = KINDS[a.kind](a, rng)
    if a.kind in ("fewshot", "multiturn") and not a.no_shuffle:
        rng.shuffle(reqs)
    out = sys.stdout
    for r in reqs:
        out.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
