#!/usr/bin/env python3
"""tpinfer's logits against transformers' on the same checkpoints.

For each of several small seeded models (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM: GQA, MQA and MHA, odd sizes, tied and untied embeddings,
llama3 and linear RoPE scaling, an explicit head_dim, q/k/v bias, one saved as
a sharded checkpoint) this script saves the model with save_pretrained
(safetensors), converts it with `tpinfer convert`, runs the same token prompts
through `tpinfer logits` and through transformers, and compares every
position's logits:

  cpu backend, fp32 file   vs transformers fp32 (CPU)   max relative error <= 1e-4, TP 1 and 2
  cuda backend, bf16 file  vs transformers bf16 (GPU)   max relative error <= 2e-2, TP 1 and 2
                                                         (TP 2: two ranks on one GPU, MPI collectives)

Relative error of a prompt = max |tpinfer - transformers| / max |transformers|
over all its positions and the vocab; a row is the max over the prompts. It
also counts positions whose greedy token differs where transformers' top-2
margin is clear of the error bound. Prints a table, writes --json, and exits 1
when a bound fails (2 when something could not run).

--trained DIR (the demo model of tools/train_demo.py) adds the same checks on a
trained model with text prompts, the tokenizer's ids against `tokenizers`, and
greedy generation: `tpinfer run` (cpu, fp32) against transformers' generate().

--write-fixtures DIR writes small fixtures for CI (tests/jobs/test_hf_fixtures.cpp):
DIR/NAME/hf/ (config.json + model.safetensors in bf16: weights rounded to bf16
values, so the bf16 file holds them exactly), DIR/NAME/logits.f32 (transformers'
fp32 logits of those weights, raw little-endian float32, rows x vocab) and
DIR/NAME/fixture.json (prompts, rows, shapes, versions).

Run on the GPU machine from the repository root (tools/gpu.sh hf does):
    python3 tools/hf_compare.py --tpinfer build-gpu/tpinfer --work /tmp/hfc --json $OUT/hf_compare.json
"""
import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time

CPU_BOUND = 1e-4
CUDA_BOUND = 2e-2

# name, architecture, config fields, rope (theta, scaling or None), save options
MODELS = [
    ("llama3_gqa_untied", "LlamaForCausalLM",
     dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2, num_attention_heads=6,
          num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=False, rms_norm_eps=1e-5),
     (500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}), {}),
    ("llama_mha_tied_linear", "LlamaForCausalLM",
     dict(hidden_size=128, intermediate_size=344, num_hidden_layers=3, num_attention_heads=4,
          num_key_value_heads=4, vocab_size=1003, tie_word_embeddings=True, rms_norm_eps=1e-6),
     (10000.0, {"rope_type": "linear", "factor": 2.0}), {}),
    ("llama_mqa_sharded", "LlamaForCausalLM",
     dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=2,
          num_key_value_heads=1, vocab_size=777, tie_word_embeddings=False, rms_norm_eps=1e-5),
     (10000.0, None), {"max_shard_size": "150KB"}),
    ("llama_d128_llama3", "LlamaForCausalLM",
     dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
          num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False, rms_norm_eps=1e-5),
     (500000.0, {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 128}), {}),
    ("mistral_gqa_head_dim", "MistralForCausalLM",
     dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, head_dim=32, vocab_size=1000, tie_word_embeddings=False,
          rms_norm_eps=1e-6, sliding_window=None),
     (1000000.0, None), {}),
    ("mistral_d64", "MistralForCausalLM",
     dict(hidden_size=256, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, vocab_size=999, tie_word_embeddings=False, rms_norm_eps=1e-5,
          sliding_window=None),
     (10000.0, None), {}),
    ("qwen2_bias_tied", "Qwen2ForCausalLM",
     dict(hidden_size=128, intermediate_size=300, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, vocab_size=1001, tie_word_embeddings=True, rms_norm_eps=1e-6),
     (1000000.0, None), {}),
    ("qwen2_bias_mha_d64", "Qwen2ForCausalLM",
     dict(hidden_size=256, intermediate_size=200, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=4, vocab_size=999, tie_word_embeddings=False, rms_norm_eps=1e-6),
     (10000.0, None), {}),
]

# Tiny models for the committed CI fixtures (< 300 KB together with their logits).
FIXTURES = [
    ("llama3_gqa_untied", "LlamaForCausalLM",
     dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, vocab_size=160, tie_word_embeddings=False, rms_norm_eps=1e-5),
     (500000.0, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 16}), {}),
    ("qwen2_bias_tied", "Qwen2ForCausalLM",
     dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, vocab_size=150, tie_word_embeddings=True, rms_norm_eps=1e-6),
     (10000.0, None), {}),
]

PROMPT_LENGTHS = [1, 7, 33, 100, 300]   # 300 > the logits command's 256-token chunk
FIXTURE_PROMPT_LENGTHS = [1, 6, 23, 50]
MAX_POSITIONS = 512


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- pure helpers

def rope_config_kwargs(config_cls, theta, scaling):
    """transformers 5 takes RoPE settings as rope_parameters (rope_theta inside);
    4.x as rope_theta + rope_scaling."""
    import inspect
    params = inspect.signature(config_cls.__init__).parameters
    if "rope_parameters" in params or "rope_parameters" in getattr(config_cls, "__dataclass_fields__", {}):
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp.update(scaling)
        return {"rope_parameters": rp}
    return {"rope_theta": theta, "rope_scaling": dict(scaling) if scaling else None}


def expected_inv_freq(head_dim, theta, scaling):
    """RoPE inverse frequencies as Meta's Llama 3.1 code and linear scaling define them."""
    inv = [1.0 / theta ** (i / head_dim) for i in range(0, head_dim, 2)]
    if not scaling:
        return inv
    f = scaling["factor"]
    if scaling["rope_type"] == "linear":
        return [x / f for x in inv]
    lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    out = []
    for x in inv:
        wl = 2 * math.pi / x
        if wl < old / hi:
            out.append(x)
        elif wl > old / lo:
            out.append(x / f)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append((1 - s) * x / f + s * x)
    return out


def prompts_for(vocab, lengths, seed):
    """Seeded token prompts (a plain LCG, so the fixture prompts never depend on torch)."""
    state = seed * 2654435761 % 2 ** 32
    out = []
    for n in lengths:
        p = []
        for _ in range(n):
            state = (1103515245 * state + 12345) % 2 ** 31
            p.append(state % vocab)
        out.append(p)
    return out


def safetensors_kwargs():
    """transformers 5 always writes safetensors and removed safe_serialization=; 4.x needs it."""
    import transformers
    return {} if int(transformers.__version__.split(".")[0]) >= 5 else {"safe_serialization": True}


def read_npy(path):
    import numpy as np
    return np.load(path)


# ---------------------------------------------------------------- transformers side

def build_model(arch, fields, rope, seed, dtype_name="float32"):
    import torch
    import transformers
    config_cls = getattr(transformers, arch.replace("ForCausalLM", "Config"))
    model_cls = getattr(transformers, arch)
    kw = dict(fields)
    kw.update(rope_config_kwargs(config_cls, *rope))
    kw.update(max_position_embeddings=MAX_POSITIONS, bos_token_id=1, eos_token_id=2,
              initializer_range=0.02)
    config = config_cls(**kw)
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    # Weights with O(1) activations and logits, norms away from 1 and biases
    # away from 0, so that a norm weight or a bias tpinfer ignored shows.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
    check_rope(model, config, rope)
    return model


def check_rope(model, config, rope):
    """transformers must apply the scaling we asked for, or the comparison proves nothing."""
    import torch
    rot = getattr(model.model, "rotary_emb", None)
    inv = getattr(rot, "inv_freq", None) if rot is not None else None
    if inv is None:
        raise RuntimeError("model.model.rotary_emb.inv_freq not found: cannot check the RoPE settings")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    want = torch.tensor(expected_inv_freq(head_dim, *rope), dtype=torch.float64)
    got = inv.detach().to(torch.float64).cpu()
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-5, atol=0):
        raise RuntimeError(f"transformers' RoPE inv_freq differs from the requested {rope}: "
                           f"{got[:4].tolist()}... vs {want[:4].tolist()}...")


def hf_logits(model, prompts, device, dtype):
    """Every position's logits of each prompt, as float32 numpy arrays."""
    import torch
    # A copy: casting the model itself to bf16 would round its fp32 weights for good.
    m = copy.deepcopy(model).to(device=device, dtype=dtype)
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p], dtype=torch.long, device=device)
            out.append(m(input_ids=ids).logits[0].float().cpu().numpy())
    del m
    return out


def save_checkpoint(model, out_dir, save_kw, dtype=None):
    shutil.rmtree(out_dir, ignore_errors=True)
    m = model if dtype is None else copy.deepcopy(model).to(dtype)
    m.save_pretrained(out_dir, **save_kw, **safetensors_kwargs())


# ---------------------------------------------------------------- tpinfer side

class Runner:
    def __init__(self, tpinfer, work, cuda_memory_fraction):
        self.tpinfer = os.path.abspath(tpinfer)
        self.work = work
        self.mem = cuda_memory_fraction
        self.env = dict(os.environ)
        # As tools/mpirun-env.sh: root in containers, no ptrace single copy, oversubscribe.
        self.env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_btl_vader_single_copy_mechanism="none",
                        OMPI_MCA_rmaps_base_oversubscribe="1")

    def run(self, args, log_name, np=None):
        cmd = ([] if np is None else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np)])
        cmd += [self.tpinfer] + args
        t0 = time.time()
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        with open(os.path.join(self.work, log_name), "w") as f:
            f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{(r.stdout + r.stderr)[-3000:]}")
        return time.time() - t0

    def convert(self, hf_dir, out, dtype, tag):
        if os.path.exists(out):
            os.remove(out)
        self.run(["convert", "--hf", hf_dir, "--output", out, "--dtype", dtype, "--quiet"],
                 f"{tag}.convert-{dtype}.log")

    def logits(self, model, prompts_file, backend, tp, tag):
        out = os.path.join(self.work, f"{tag}.{backend}.tp{tp}.npy")
        args = ["logits", "--model", model, "--input", prompts_file, "--output", out,
                "--backend", backend, "--tp", str(tp)]
        if backend == "cuda":
            args += ["--memory-fraction", str(self.mem)]
        else:
            args += ["--threads", "2"]
        self.run(args, f"{tag}.logits-{backend}-tp{tp}.log", np=tp)
        with open(out + ".json") as f:
            index = json.load(f)
        return read_npy(out), index


def write_prompts(path, prompts=None, texts=None):
    """Token prompts, or text prompts (which tpinfer encodes with the model's tokenizer)."""
    lines = ([{"id": i, "prompt": t} for i, t in enumerate(texts)] if texts is not None
             else [{"id": i, "prompt_tokens": p} for i, p in enumerate(prompts)])
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def compare(got, index, want, bound):
    """(max relative error over prompts, greedy mismatches at clear margins, positions)."""
    import numpy as np
    worst, bad, rows = 0.0, 0, 0
    for i, w in enumerate(want):
        p = index["prompts"][i]
        g = got[p["row"]:p["row"] + p["rows"]]
        if g.shape != w.shape:
            raise RuntimeError(f"prompt {i}: tpinfer rows {g.shape} vs transformers {w.shape}")
        scale = float(np.abs(w).max())
        err = float(np.abs(g.astype(np.float64) - w).max()) / scale
        worst = max(worst, err if math.isfinite(err) else float("inf"))
        top2 = np.sort(w, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * bound * scale
        bad += int(((g.argmax(axis=1) != w.argmax(axis=1)) & clear).sum())
        rows += w.shape[0]
    return worst, bad, rows


# ---------------------------------------------------------------- the checks

class Table:
    def __init__(self):
        self.rows = []

    def add(self, model, check, tp, bound, result, seconds):
        err, greedy_bad, rows = result
        ok = err <= bound and greedy_bad == 0
        self.rows.append(dict(model=model, check=check, tp=tp, max_rel_err=err, bound=bound,
                              greedy_mismatch=greedy_bad, positions=rows, ok=ok, seconds=seconds))
        log(f"  {check:34s} tp {tp}: max rel err {err:.3e} (bound {bound:.0e}), greedy mismatches "
            f"{greedy_bad}/{rows}  {'ok' if ok else 'FAIL'}")

    def fail(self, model, check, why):
        self.rows.append(dict(model=model, check=check, tp=0, ok=False, error=why))
        log(f"  {check}: ERROR {why}")

    def print(self):
        log("\n| model | check | TP | max rel err | bound | greedy mismatches | result |")
        log("| --- | --- | --- | --- | --- | --- | --- |")
        for r in self.rows:
            if "error" in r:
                log(f"| {r['model']} | {r['check']} | - | - | - | - | ERROR |")
            else:
                log(f"| {r['model']} | {r['check']} | {r['tp']} | {r['max_rel_err']:.2e} | "
                    f"{r['bound']:.0e} | {r['greedy_mismatch']}/{r['positions']} | "
                    f"{'ok' if r['ok'] else 'FAIL'} |")


def check_model(name, arch, fields, rope, save_kw, seed, args, runner, table, cuda):
    import torch
    log(f"== {name} ({arch}, hidden {fields['hidden_size']}, heads {fields['num_attention_heads']}/"
        f"{fields['num_key_value_heads']}, vocab {fields['vocab_size']}, "
        f"{'tied' if fields.get('tie_word_embeddings') else 'untied'}, rope {rope[1] and rope[1]['rope_type']})")
    model = build_model(arch, fields, rope, seed)
    hf_dir = os.path.join(args.work, name)
    save_checkpoint(model, hf_dir, save_kw)
    shards = sorted(f for f in os.listdir(hf_dir) if f.endswith(".safetensors"))
    if save_kw.get("max_shard_size") and len(shards) < 2:
        raise RuntimeError(f"{name}: expected a sharded checkpoint, got {shards}")
    prompts = prompts_for(fields["vocab_size"], PROMPT_LENGTHS, seed)
    pfile = os.path.join(args.work, f"{name}.prompts.jsonl")
    write_prompts(pfile, prompts)
    want32 = hf_logits(model, prompts, "cpu", torch.float32)

    h5_32 = os.path.join(args.work, f"{name}.fp32.h5")
    runner.convert(hf_dir, h5_32, "fp32", name)
    for tp in args.tp:
        t0 = time.time()
        got, index = runner.logits(h5_32, pfile, "cpu", tp, name)
        table.add(name, "cpu fp32 vs transformers fp32", tp, CPU_BOUND, compare(got, index, want32, CPU_BOUND),
                  time.time() - t0)
    if cuda:
        h5_16 = os.path.join(args.work, f"{name}.bf16.h5")
        runner.convert(hf_dir, h5_16, "bf16", name)
        want16 = hf_logits(model, prompts, "cuda", torch.bfloat16)
        for tp in args.tp:
            t0 = time.time()
            got, index = runner.logits(h5_16, pfile, "cuda", tp, name)
            table.add(name, "cuda bf16 vs transformers bf16", tp, CUDA_BOUND,
                      compare(got, index, want16, CUDA_BOUND), time.time() - t0)
            err32 = compare(got, index, want32, CUDA_BOUND)[0]
            log(f"  (cuda bf16 tp {tp} vs transformers fp32: {err32:.3e}; transformers bf16 vs fp32: "
                f"{max(float(abs(a - b).max() / abs(b).max()) for a, b in zip(want16, want32)):.3e})")


def write_fixture(name, arch, fields, rope, save_kw, seed, out_root):
    import numpy as np
    import torch
    import transformers
    model = build_model(arch, fields, rope, seed)
    with torch.no_grad():  # weights that bf16 holds exactly
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    prompts = prompts_for(fields["vocab_size"], FIXTURE_PROMPT_LENGTHS, seed)
    want = hf_logits(model, prompts, "cpu", torch.float32)
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    save_checkpoint(model, os.path.join(d, "hf"), save_kw, dtype=torch.bfloat16)
    logits = np.concatenate(want).astype("<f4")
    logits.tofile(os.path.join(d, "logits.f32"))
    entries, row = [], 0
    for i, p in enumerate(prompts):
        entries.append({"id": i, "prompt_tokens": p, "row": row, "rows": len(p)})
        row += len(p)
    meta = {
        "name": name,
        "architecture": arch,
        "about": "transformers' fp32 logits (CPU) of every prompt position for the checkpoint in hf/ "
                 "(bf16 safetensors whose values the fp32 model used exactly); written by "
                 "tools/hf_compare.py --write-fixtures; checked by tests/jobs/test_hf_fixtures.cpp",
        "logits_file": "logits.f32",
        "logits_dtype": "float32 little-endian, C order",
        "rows": int(logits.shape[0]),
        "vocab_size": int(logits.shape[1]),
        "bound": CPU_BOUND,
        "prompts": entries,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": seed,
    }
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(d) for fn in fns)
    log(f"fixture {name}: {logits.shape[0]} rows x {logits.shape[1]}, {size} bytes -> {d}")


def check_trained(args, runner, table, cuda):
    """The demo model: tokenizer ids, logits at both precisions, greedy generation."""
    import torch
    import transformers
    from tokenizers import Tokenizer
    d = args.trained
    name = "trained:" + os.path.basename(os.path.normpath(d))
    log(f"== {name}")
    try:  # transformers 5 names it dtype; 4.x torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
    model = model.to(torch.float32).eval()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = [json.loads(line)["prompt"] for line in open(args.trained_prompts) if line.strip()]
    texts = texts[:args.trained_count]
    pfile = os.path.join(args.work, "trained.prompts.jsonl")
    write_prompts(pfile, texts=texts)
    ids = [tok.encode(t, add_special_tokens=True).ids for t in texts]
    h5_32 = os.path.join(args.work, "trained.fp32.h5")
    runner.convert(d, h5_32, "fp32", "trained")
    want32 = hf_logits(model, ids, "cpu", torch.float32)
    for tp in args.tp:
        t0 = time.time()
        got, index = runner.logits(h5_32, pfile, "cpu", tp, "trained")
        ours = [p["prompt_tokens"] for p in index["prompts"]]
        same = sum(a == b for a, b in zip(ours, ids))
        log(f"  tokenizer: tpinfer's prompt ids equal tokenizers' for {same}/{len(ids)} prompts")
        if same != len(ids):
            table.fail(name, "prompt ids vs tokenizers", f"{len(ids) - same} prompts differ")
            return
        table.add(name, "cpu fp32 vs transformers fp32", tp, CPU_BOUND, compare(got, index, want32, CPU_BOUND),
                  time.time() - t0)
    if cuda:
        h5_16 = os.path.join(args.work, "trained.bf16.h5")
        runner.convert(d, h5_16, "bf16", "trained")
        want16 = hf_logits(model, ids, "cuda", torch.bfloat16)
        for tp in args.tp:
            t0 = time.time()
            got, index = runner.logits(h5_16, pfile, "cuda", tp, "trained")
            table.add(name, "cuda bf16 vs transformers bf16", tp, CUDA_BOUND,
                      compare(got, index, want16, CUDA_BOUND), time.time() - t0)
    # Greedy generation, fp32 on both sides; EOS does not stop either.
    n_new = 32
    gfile = os.path.join(args.work, "trained.greedy.jsonl")
    with open(gfile, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": i, "prompt": t, "max_new_tokens": n_new, "ignore_eos": True}) + "\n")
    out = os.path.join(args.work, "trained.greedy.out.jsonl")
    if os.path.exists(out):
        os.remove(out)
    runner.run(["run", "--model", h5_32, "--input", gfile, "--output", out, "--backend", "cpu",
                "--tp", "2", "--threads", "2"], "trained.run.log", np=2)
    ours = {}
    for line in open(out):
        j = json.loads(line)
        ours[j["id"]] = j["tokens"]
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    equal = 0
    with torch.no_grad():
        for i, p in enumerate(ids):
            # The attention mask is explicit: generate() would otherwise mask
            # every prompt token equal to pad_token_id (the BOS, when it is 0).
            x = torch.tensor([p])
            g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_new,
                               min_new_tokens=0, do_sample=False, eos_token_id=None, pad_token_id=0)
            theirs = g[0, len(p):].tolist()
            equal += theirs == ours.get(i)
    log(f"  greedy generation ({n_new} tokens, cpu fp32 tp 2 vs transformers fp32): "
        f"{equal}/{len(ids)} prompts identical")
    table.rows.append(dict(model=name, check="greedy generation", tp=2, ok=equal == len(ids),
                           identical=equal, prompts=len(ids), max_rel_err=0.0, bound=0.0,
                           greedy_mismatch=len(ids) - equal, positions=len(ids)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tpinfer", default="build-gpu/tpinfer")
    ap.add_argument("--work", default="/tmp/hf_compare")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--tp", default="1,2", help="TP sizes (comma list)")
    ap.add_argument("--backends", default="cpu,cuda", help="cpu, cuda or both; cuda needs a GPU")
    ap.add_argument("--only", help="comma list of model names")
    ap.add_argument("--cuda-memory-fraction", type=float, default=0.05)
    ap.add_argument("--write-fixtures", metavar="DIR", help="write the CI fixtures to DIR and stop")
    ap.add_argument("--trained", metavar="DIR", help="also check this trained model directory")
    ap.add_argument("--trained-prompts", default="inputs/prompts-text.jsonl")
    ap.add_argument("--trained-count", type=int, default=16)
    ap.add_argument("--skip-random", action="store_true", help="only --trained")
    args = ap.parse_args()
    args.tp = [int(t) for t in args.tp.split(",")]

    import torch
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log(f"transformers {transformers.__version__}, torch {torch.__version__}")
    if args.write_fixtures:
        os.makedirs(args.write_fixtures, exist_ok=True)
        for i, spec in enumerate(FIXTURES):
            write_fixture(*spec, seed=100 + i, out_root=args.write_fixtures)
        return 0

    os.makedirs(args.work, exist_ok=True)
    cuda = "cuda" in args.backends.split(",")
    if cuda and not torch.cuda.is_available():
        log("no GPU visible: cuda checks skipped")
        cuda = False
    runner = Runner(args.tpinfer, args.work, args.cuda_memory_fraction)
    table = Table()
    only = set(args.only.split(",")) if args.only else None
    t_start = time.time()
    if not args.skip_random:
        for i, spec in enumerate(MODELS):
            if only and spec[0] not in only:
                continue
            try:
                check_model(*spec, seed=i + 1, args=args, runner=runner, table=table, cuda=cuda)
            except Exception as e:  # one model's failure must not hide the others'
                table.fail(spec[0], "run", str(e).splitlines()[0][:300])
                log(str(e))
    if args.trained:
        try:
            check_trained(args, runner, table, cuda)
        except Exception as e:
            table.fail("trained", "run", str(e).splitlines()[0][:300])
            log(str(e))
    table.print()
    log(f"\n{sum(r['ok'] for r in table.rows)} of {len(table.rows)} checks passed in "
        f"{time.time() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                       "bounds": {"cpu_fp32": CPU_BOUND, "cuda_bf16": CUDA_BOUND},
                       "rows": table.rows}, f, indent=1)
    if any("error" in r for r in table.rows):
        return 2
    return 0 if all(r["ok"] for r in table.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
