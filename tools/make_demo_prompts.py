#!/usr/bin/env python3
"""Writes inputs/prompts-text.jsonl: text prompts for the trained demo model
(tools/train_demo.py), openings of paragraphs in the style of the Brown
corpus it learned from (news, editorials, fiction, science, religion, hobbies).
Every third request samples (temperature, top_p, its own seed); the rest are
greedy. Deterministic: the same file every run.

    python3 tools/make_demo_prompts.py [--output inputs/prompts-text.jsonl]
"""
import argparse
import json
import os

OPENINGS = [
    "The Fulton County Grand Jury said Friday",
    "The President told reporters at his news conference that",
    "In the state legislature yesterday, the senators",
    "The city council voted last night to",
    "According to the report, the new school",
    "The Yankees won their third straight game",
    "Mrs. Kennedy, who arrived in Washington on Monday,",
    "It is no secret that the administration",
    "The committee recommended that the budget",
    "Our foreign policy in Asia",
    "He looked at her for a long moment and",
    "She opened the door and saw",
    "The old man sat on the porch",
    "When the train pulled into the station,",
    "It was a cold night in November, and",
    "I had never seen anything like it before, and",
    "The sheriff rode into town",
    "They walked along the river until",
    "After dinner the family gathered",
    "The ship was three days out of port when",
    "The church has always taught that",
    "Faith, he said, is",
    "In the beginning of the nineteenth century,",
    "The results of the experiment show that",
    "The temperature of the gas was measured",
    "Most of the patients in the study",
    "The first step in building a boat is",
    "To make a good garden, you must",
    "The new models of automobiles this year",
    "Music, like painting, is",
    "The history of the American theater",
    "Students at the university",
    "The price of wheat has",
    "The jury said it did find that",
    "For many years the farmers of the valley",
    "The United Nations General Assembly",
]


def requests():
    out = []
    for i, text in enumerate(OPENINGS):
        r = {"id": f"demo-{i:02d}", "prompt": text, "max_new_tokens": 48 + 16 * (i % 4)}
        if i % 3 == 2:
            r.update(temperature=0.8, top_p=0.95, seed=1000 + i)
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="inputs/prompts-text.jsonl")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for r in requests():
            f.write(json.dumps(r) + "\n")
    print(f"make_demo_prompts: {len(OPENINGS)} requests -> {args.output}")


if __name__ == "__main__":
    main()
