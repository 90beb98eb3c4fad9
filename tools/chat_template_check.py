#!/usr/bin/env python3
"""tpinfer's chat prompts against transformers' apply_chat_template.

For each tokenizer directory (tokenizer.json + tokenizer_config.json with a
chat_template), every conversation of tests/data/chat_templates/conversations.json
goes through transformers' `apply_chat_template(messages, tokenize=True,
add_generation_prompt=True)` and through `tpinfer tokenize --chat` with the same
template and special tokens; the token ids must be equal. Prints a markdown
table (docs/HF_CHECKS.md) and exits 1 on any difference.

  tools/chat_template_check.py --tpinfer build-gpu/tpinfer DIR...
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from transformers import AutoTokenizer, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERSATIONS = os.path.join(HERE, "..", "tests", "data", "chat_templates", "conversations.json")


def special(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def template_of(cfg, directory):
    path = os.path.join(directory, "chat_template.jinja")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    t = cfg.get("chat_template")
    if isinstance(t, list):
        named = {e["name"]: e["template"] for e in t}
        t = named.get("default")
    return t


def tpinfer_ids(binary, directory, template, bos, eos, conversations):
    with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False, encoding="utf-8") as f:
        f.write(template)
        template_path = f.name
    cmd = [binary, "tokenize", "--tokenizer", os.path.join(directory, "tokenizer.json"), "--chat",
           "--chat-template", template_path]
    if bos:
        cmd += ["--bos-token", bos]
    if eos:
        cmd += ["--eos-token", eos]
    stdin = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in conversations)
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, encoding="utf-8")
    os.unlink(template_path)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return [json.loads(line) for line in out.stdout.splitlines()], ""


def load_tokenizers(d):
    """transformers' tokenizer for directory d as AutoTokenizer builds it, and
    the faithful load of tokenizer.json (PreTrainedTokenizerFast, what v4 and
    vLLM use) when AutoTokenizer's pre-tokenizer is not the file's, else None.
    transformers 5 builds a tokenizer_config's `tokenizer_class` with that
    class's own pre-tokenizer: DeepSeek-V3 declares LlamaTokenizerFast over a
    ByteLevel tokenizer.json, gets Metaspace and loses every space
    (huggingface/transformers#45488); another class may only restate the same
    splits. main() compares the two loads' ids to tell which."""
    auto = AutoTokenizer.from_pretrained(d)
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        declared = json.load(f).get("pre_tokenizer")
    if json.loads(auto.backend_tokenizer.to_str()).get("pre_tokenizer") == declared:
        return auto, None
    return auto, PreTrainedTokenizerFast.from_pretrained(d)


def chat_ids(tok, template, messages):
    """apply_chat_template's ids, or None when the template raises."""
    tok.chat_template = template
    try:
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    except Exception:  # the template's raise_exception: tpinfer must refuse too
        return None
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tpinfer", required=True)
    ap.add_argument("dirs", nargs="+", help="tokenizer directories")
    args = ap.parse_args()
    with open(CONVERSATIONS, encoding="utf-8") as f:
        conversations = json.load(f)
    names = sorted(conversations)
    print("| tokenizer | conversations | equal | first difference |")
    print("| --- | --- | --- | --- |")
    failed = False
    for d in args.dirs:
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        template = template_of(cfg, d)
        if not template:
            print(f"| {os.path.basename(d)} | - | - | no chat template |")
            continue
        auto, faithful = load_tokenizers(d)
        tok = faithful or auto
        want = {n: chat_ids(tok, template, conversations[n]) for n in names}
        skipped = [n for n in names if want[n] is None]
        loaded = ""
        if faithful:
            differ = [n for n in names if want[n] is not None and
                      chat_ids(auto, template, conversations[n]) != want[n]]
            name = type(auto).__name__
            loaded = (f"AutoTokenizer's {name} rebuilds tokenizer.json's pre-tokenizer and "
                      f"gives other ids on {len(differ)} conversations (huggingface/transformers"
                      f"#45488): compared with the file as written (PreTrainedTokenizerFast)"
                      if differ else
                      f"AutoTokenizer's {name} rebuilds tokenizer.json's pre-tokenizer, "
                      f"with the same ids")
        ran, refused, equal, first = [], [], 0, ""
        for n in names:
            if n in skipped:
                continue
            got, err = tpinfer_ids(args.tpinfer, d, template, special(cfg, "bos_token"),
                                   special(cfg, "eos_token"), [conversations[n]])
            if got is None:  # tpinfer refuses what would change the prompt (tool calls)
                refused.append(f"{n} ({err.split(': ', 2)[-1][:60]})")
                continue
            ran.append(n)
            if got[0] == want[n]:
                equal += 1
            elif not first:
                g, w = got[0], want[n]
                at = next((i for i in range(min(len(g), len(w))) if g[i] != w[i]), min(len(g), len(w)))
                text = tok.apply_chat_template(conversations[n], tokenize=False,
                                               add_generation_prompt=True)
                first = (f"{n}: token {at}: tpinfer {tok.decode(g[at:at + 8])!r} vs "
                         f"transformers {tok.decode(w[at:at + 8])!r} (its rendered text: "
                         f"{text[-80:]!r})")
        failed = failed or equal != len(ran)
        notes = [x for x in [loaded, first, "raised by the template: " + ", ".join(skipped) if skipped else "",
                             "refused by tpinfer: " + "; ".join(refused) if refused else ""] if x]
        print(f"| {os.path.basename(d)} | {len(ran)} | {equal} | {' / '.join(notes)} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
