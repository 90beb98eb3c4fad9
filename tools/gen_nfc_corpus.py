#!/usr/bin/env python3
"""Writes tests/data/nfc/nfc_cases.txt: strings and their NFC by Python's
unicodedata.normalize, an implementation independent of tpinfer's
(tests/unit/test_nfc.cpp compares). One case a line, "INPUT;EXPECTED", each a
space-separated list of hex code points, as in Unicode's NormalizationTest.txt.

Cases: every code point with a canonical decomposition, a non-zero combining
class, or that can compose with what precedes it, alone (the last also after
"a"); Hangul syllables and jamo sequences; seeded random strings of bases,
combining marks of many classes, jamo, singletons and composition exclusions.
Only code points assigned in Python's Unicode version are used: NFC of those
is the same in every later version (Unicode's normalization stability policy),
so the tables may come from a newer one.

Run from the repository root:  python3 tools/gen_nfc_corpus.py
"""
import os
import random
import unicodedata

OUT = "tests/data/nfc/nfc_cases.txt"


def assigned(cp):
    return not (0xD800 <= cp <= 0xDFFF) and unicodedata.category(chr(cp)) != "Cn"


def hexes(s):
    return " ".join(f"{ord(c):04X}" for c in s)


def main():
    cps = [cp for cp in range(0x110000) if assigned(cp)]
    decomposable = [cp for cp in cps
                    if unicodedata.decomposition(chr(cp)) and
                    not unicodedata.decomposition(chr(cp)).startswith("<")]
    marks = [cp for cp in cps if unicodedata.combining(chr(cp))]
    # Second members of canonical pairs (what may compose with a preceding character).
    seconds = sorted({int(d.split()[1], 16) for d in
                      (unicodedata.decomposition(chr(cp)) for cp in decomposable)
                      if len(d.split()) == 2})
    singletons = [cp for cp in decomposable if len(unicodedata.decomposition(chr(cp)).split()) == 1]
    firsts = sorted({int(unicodedata.decomposition(chr(cp)).split()[0], 16) for cp in decomposable})

    cases = []
    seen = set()

    def add(s):
        if s not in seen:
            seen.add(s)
            cases.append(s)

    for cp in sorted(set(decomposable) | set(marks) | set(seconds)):
        add(chr(cp))
    for cp in seconds:
        add("a" + chr(cp))
    # Hangul: every 97th syllable, all L+V and a sample of LV+T and L+V+T.
    for s in range(0xAC00, 0xD7A4, 97):
        add(chr(s))
    for l in range(0x1100, 0x1113):
        for v in range(0x1161, 0x1176):
            add(chr(l) + chr(v))
    for t in range(0x11A8, 0x11C3):
        add(chr(0xAC00) + chr(t))
        add(chr(0x1100) + chr(0x1161) + chr(t))
        add(chr(0xAC01) + chr(t))  # an LVT syllable does not take another T

    rng = random.Random(20240515)
    pools = [
        [ord(c) for c in "aeiouAEIOUcnsyzCNSYZ "],
        firsts,
        marks,
        seconds,
        list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) + list(range(0x11A8, 0x11C3)),
        list(range(0xAC00, 0xD7A4, 29)),
        singletons,
        decomposable,
    ]
    weights = [4, 3, 6, 4, 2, 1, 1, 2]
    target = len(cases) + 1200
    while len(cases) < target:
        n = rng.randint(2, 10)
        add("".join(chr(rng.choice(rng.choices(pools, weights)[0])) for _ in range(n)))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="ascii") as f:
        f.write(f"# NFC by Python {unicodedata.unidata_version} unicodedata.normalize; "
                "written by tools/gen_nfc_corpus.py\n")
        for s in cases:
            f.write(f"{hexes(s)};{hexes(unicodedata.normalize('NFC', s))}\n")
    changed = sum(1 for s in cases if unicodedata.normalize("NFC", s) != s)
    print(f"wrote {OUT}: {len(cases)} cases ({changed} changed by NFC), "
          f"Unicode {unicodedata.unidata_version}")


if __name__ == "__main__":
    main()
