#!/usr/bin/env python3
"""The peer: Hugging Face transformers on the same model config and workloads as
`tpinfer bench`, on the same GPU, in the same command (see docs/PERF.md).

bf16 weights (seeded random init), static KV cache, generate() compiled with
torch.compile (transformers compiles the forward when the cache is static), the
largest batch that fits for offline work. Prints one line per scenario and
writes --json.

  python3 tools/hf_baseline.py --model-config cfg.json --json hf.json \
      [--fixed 128/128,1000/1000,2048/128] [--workload mixed.jsonl] [--requests 256]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def log(*args):
    print(*args, flush=True)


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


class Peer:
    def __init__(self, config_path, seed, max_batch):
        cfg = json.load(open(config_path))
        arch = (cfg.get("architectures") or ["LlamaForCausalLM"])[0]
        model_type = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                      "Qwen2ForCausalLM": "qwen2"}[arch]
        config = AutoConfig.for_model(model_type, **{
            k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "torch_dtype")})
        torch.manual_seed(seed)
        with torch.device("cuda"):
            self.model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
        self.model.eval()
        self.vocab = config.vocab_size
        self.max_batch = max_batch
        self.gen = torch.Generator(device="cuda").manual_seed(seed)
        self.caches = {}  # (batch, max_len) -> a StaticCache reused across calls

    def cache(self, batch, max_len):
        """One static cache per shape, reset between calls, so the compiled decode step keeps
        its shapes (a new cache length would recompile) and nothing is reallocated."""
        key = (batch, max_len)
        if key not in self.caches:
            self.caches.clear()
            torch.cuda.empty_cache()
            from transformers import StaticCache
            try:
                c = StaticCache(config=self.model.config, max_batch_size=batch, max_cache_len=max_len,
                                device="cuda", dtype=torch.bfloat16)
            except TypeError:  # newer signature: batch size taken from the first update
                c = StaticCache(config=self.model.config, max_cache_len=max_len)
            self.caches[key] = c
        c = self.caches[key]
        c.reset()
        return c

    def prompts(self, batch, length):
        return torch.randint(3, self.vocab, (batch, length), device="cuda", generator=self.gen)

    def generate(self, ids, new_tokens, max_len=None):
        with torch.no_grad():
            return self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=False,
                past_key_values=self.cache(ids.shape[0], max_len or ids.shape[1] + new_tokens),
                pad_token_id=0)

    def decode(self, batch, repeats, steps=128, prompt=128):
        ids = self.prompts(batch, prompt)
        max_len = prompt + steps + 1
        for _ in range(2):  # compile and warm up
            self.generate(ids, 1, max_len)
            self.generate(ids, steps + 1, max_len)
        per = []
        for _ in range(repeats):
            t_full = timed(lambda: self.generate(ids, steps + 1, max_len))
            t_prefill = timed(lambda: self.generate(ids, 1, max_len))
            per.append((t_full - t_prefill) / steps)
        return per

    def prefill(self, length, repeats):
        ids = self.prompts(1, length)
        with torch.no_grad():
            for _ in range(2):
                self.model(ids, use_cache=False)
            return [length / timed(lambda: self.model(ids, use_cache=False)) for _ in range(repeats)]

    def offline(self, requests, repeats):
        """requests: list of (prompt_len, new_tokens). Batches of the largest size that fits,
        grouped by prompt length (left padding would change the work), each batch generating
        to its longest output; only requested tokens count."""
        reqs = sorted(requests, reverse=True)
        batch = min(self.max_batch, len(reqs))
        # A batch runs to its longest prompt plus its longest output.
        max_len = max(p for p, _ in reqs) + max(o for _, o in reqs)
        while True:
            try:
                isl, osl = reqs[0]
                # Compile, and check that it fits: the static cache is allocated whole for
                # (batch, max_len) and every decode step has the same shapes, so a few
                # tokens warm up what the timed runs use (1000 would double a 1000/1000 run).
                self.generate(self.prompts(batch, isl), min(osl, 4), max_len)
                break
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                if batch == 1:
                    raise
                batch //= 2
                log(f"  out of memory, batch -> {batch}")
        useful = sum(o for _, o in reqs)
        rates = []
        for _ in range(repeats):
            def run():
                for i in range(0, len(reqs), batch):
                    chunk = reqs[i:i + batch]
                    isl = max(p for p, _ in chunk)
                    osl = max(o for _, o in chunk)
                    self.generate(self.prompts(len(chunk), isl), osl, max_len)
            rates.append(useful / timed(run))
        return rates, batch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True)
    p.add_argument("--scenarios", default="decode1,decode64,prefill2048,offline")
    p.add_argument("--fixed", default="128/128,1000/1000,2048/128")
    p.add_argument("--workload", action="append", default=[])
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--offline-repeats", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    a = p.parse_args()

    log(f"hf_baseline: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.cuda.get_device_name()}")
    peer = Peer(a.model_config, a.seed, a.max_batch)
    results = []

    def report(name, samples, unit, **extra):
        value = statistics.median(samples)
        results.append({"scenario": name, "value": value, "unit": unit, "samples": samples, **extra})
        log(f"{name:28s} {value:12.2f} {unit} {extra if extra else ''}")
        if a.json:  # after every scenario: a time limit keeps what finished
            json.dump({"peer": "transformers static cache + torch.compile", "results": results},
                      open(a.json, "w"), indent=2)

    for s in a.scenarios.split(","):
        try:
            if s == "decode1":
                report("decode batch 1", [t * 1e3 for t in peer.decode(1, a.repeats)], "ms/token")
            elif s == "decode64":
                report("decode batch 64", [64 / t for t in peer.decode(64, a.repeats)], "tokens/s")
            elif s == "prefill2048":
                report("prefill 2048", peer.prefill(2048, a.repeats), "tokens/s")
            elif s == "offline":
                # Shortest first, so a time limit loses the fewest numbers.
                for path in a.workload:
                    reqs = [(len(j["prompt_tokens"]), j["max_new_tokens"])
                            for j in map(json.loads, open(path))]
                    rates, batch = peer.offline(reqs, a.offline_repeats)
                    report(f"offline {path}", rates, "output tokens/s", batch=batch)
                shapes = [tuple(map(int, t.split("/"))) for t in a.fixed.split(",")]
                for isl, osl in sorted(shapes, key=lambda s: s[0] * s[1]):
                    rates, batch = peer.offline([(isl, osl)] * a.requests, a.offline_repeats)
                    report(f"offline {isl}/{osl} x{a.requests}", rates, "output tokens/s",
                           batch=batch)
        except Exception as e:  # one failed scenario must not lose the others' numbers
            log(f"{s}: failed: {type(e).__name__}: {e}")
            results.append({"scenario": s, "error": f"{type(e).__name__}: {e}"})
    if a.json:
        json.dump({"peer": "transformers static cache + torch.compile", "results": results},
                  open(a.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
