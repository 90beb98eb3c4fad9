#!/usr/bin/env python3
"""Generates src/text/tokenizer_nfc_tables.cpp, the data behind the
tokenizer's NFC, NFD, NFKC and NFKD normalizers (src/text/unicode_nfc.cpp), from
the Unicode Character Database of the Debian package `unicode-data` (installed with apt-get when missing):

  - canonical combining classes (UnicodeData.txt field 3), as ranges;
  - canonical one-level decompositions (field 5 without a <tag>), each with a flag
    saying whether the pair is a primary composite (not in Full_Composition_Exclusion
    of DerivedNormalizationProps.txt, which this script cross-checks against
    CompositionExclusions.txt plus the singleton and non-starter rules of UAX #15);
  - compatibility one-level decompositions (field 5 with a <tag>), for NFKD/NFKC.

Hangul syllables are algorithmic and not in the tables.

Run from the repository root:  python3 tools/gen_unicode_nfc.py
"""
import os
import re
import subprocess
import sys

UCD = "/usr/share/unicode"
OUT = "src/text/tokenizer_nfc_tables.cpp"


def ensure_ucd():
    if os.path.exists(os.path.join(UCD, "UnicodeData.txt")):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.check_call(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                  "unicode-data"], env=env)


def ucd_version():
    with open(os.path.join(UCD, "ReadMe.txt"), encoding="utf-8") as f:
        m = re.search(r"Version (\d+\.\d+\.\d+)", f.read())
    return m.group(1) if m else "unknown"


def code_points(field):
    """'0340..0341' or '0340' -> range of ints."""
    if ".." in field:
        lo, hi = field.split("..")
        return range(int(lo, 16), int(hi, 16) + 1)
    return range(int(field, 16), int(field, 16) + 1)


def read_property(path, name):
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [x.strip() for x in line.split(";")]
            if len(fields) >= 2 and fields[1] == name:
                out.update(code_points(fields[0]))
    return out


def read_property_values(path, name):
    """Code points listed with any value of a property (NFC_QC: N or M)."""
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            fields = [x.strip() for x in line.split(";")] if line else []
            if len(fields) >= 3 and fields[1] == name:
                out.update(code_points(fields[0]))
    return out


def main():
    ensure_ucd()
    ccc = {}
    decomp = {}
    compat = {}
    with open(os.path.join(UCD, "UnicodeData.txt"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    for i, row in enumerate(rows):
        cp = int(row[0], 16)
        # "<CJK Ideograph, First>" ... "Last>" ranges all have class 0 and no mapping.
        if int(row[3]):
            ccc[cp] = int(row[3])
        if row[5] and not row[5].startswith("<"):
            parts = [int(x, 16) for x in row[5].split()]
            assert 1 <= len(parts) <= 2, row
            decomp[cp] = parts
        elif row[5]:
            compat[cp] = [int(x, 16) for x in row[5].split()[1:]]

    excluded = read_property(os.path.join(UCD, "DerivedNormalizationProps.txt"),
                             "Full_Composition_Exclusion")
    # Cross-check: Full_Composition_Exclusion = the exclusion list + singletons +
    # non-starter decompositions (UAX #15, section 5.1).
    listed = set()
    with open(os.path.join(UCD, "CompositionExclusions.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                listed.update(code_points(line))
    derived = set(listed)
    for cp, parts in decomp.items():
        if len(parts) == 1 or ccc.get(cp, 0) or ccc.get(parts[0], 0):
            derived.add(cp)
    if derived != excluded:
        sys.exit("gen_unicode_nfc: Full_Composition_Exclusion disagrees with the derivation: "
                 f"{sorted(derived ^ excluded)[:10]}")

    # unicode_nfc.cpp returns text made only of code points below U+0300 as it is:
    # they must all be NFC_Quick_Check=Yes (not No, not Maybe) and of class 0.
    props = os.path.join(UCD, "DerivedNormalizationProps.txt")
    not_yes = read_property_values(props, "NFC_QC")
    low = sorted(cp for cp in not_yes if cp < 0x300) + sorted(cp for cp in ccc if cp < 0x300)
    if low:
        sys.exit(f"gen_unicode_nfc: code points below U+0300 that NFC may change: {low[:10]}")

    # Ranges of equal non-zero combining class.
    ranges = []
    for cp in sorted(ccc):
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == ccc[cp]:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, ccc[cp]])

    def rows_of(items, per_line):
        return "".join("  " + " ".join(items[i:i + per_line]) + "\n"
                       for i in range(0, len(items), per_line))

    ccc_items = [f"{{0x{lo:X},0x{hi:X},{c}}}," for lo, hi, c in ranges]
    dec_items = []
    for cp in sorted(decomp):
        parts = decomp[cp]
        second = parts[1] if len(parts) == 2 else 0
        composes = int(len(parts) == 2 and cp not in excluded)
        dec_items.append(f"{{0x{cp:X},0x{parts[0]:X},0x{second:X},{composes}}},")

    compat_items, compat_cps = [], []
    for cp in sorted(compat):
        compat_items.append(f"{{0x{cp:X},{len(compat_cps)},{len(compat[cp])}}},")
        compat_cps.extend(f"0x{x:X}," for x in compat[cp])
    assert len(compat_cps) < 65536 and max(len(v) for v in compat.values()) < 256

    text = f"""// Generated by tools/gen_unicode_nfc.py from the Unicode Character Database
// {ucd_version()} (Debian package unicode-data). Do not edit by hand.
#include "text/unicode_nfc.hpp"

namespace tpinfer::tokenizer_detail {{

// Non-zero canonical combining classes: {{first, last, class}}.
extern const CombiningClassRange kCombiningClasses[] = {{
{rows_of(ccc_items, 5)}}};
extern const size_t kCombiningClasses_count = {len(ccc_items)};

// Canonical decompositions, one level: {{code point, first, second (0: a singleton),
// composes (a primary composite: NFC recomposes the pair)}}.
extern const CanonicalDecomposition kCanonicalDecompositions[] = {{
{rows_of(dec_items, 4)}}};
extern const size_t kCanonicalDecompositions_count = {len(dec_items)};

// Compatibility decompositions, one level: {{code point, first index in
// kCompatCodePoints, length}}.
extern const CompatDecomposition kCompatDecompositions[] = {{
{rows_of(compat_items, 5)}}};
extern const size_t kCompatDecompositions_count = {len(compat_items)};
extern const uint32_t kCompatCodePoints[] = {{
{rows_of(compat_cps, 8)}}};

}}  // namespace tpinfer::tokenizer_detail
"""
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(ccc_items)} class ranges, {len(dec_items)} decompositions "
          f"({sum(1 for x in dec_items if x.endswith(',1},'))} compose), {len(compat_items)} compatibility decompositions, "
          f"Unicode {ucd_version()}")


if __name__ == "__main__":
    main()
