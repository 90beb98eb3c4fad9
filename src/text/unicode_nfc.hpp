#pragma once
// Unicode normalization forms C, D, KC and KD (UAX #15), for the tokenizer's
// NFC/NFD/NFKC/NFKD normalizers (Qwen2's tokenizer.json has NFC). Internal to
// src/text. The tables come from tools/gen_unicode_nfc.py
// (src/text/tokenizer_nfc_tables.cpp).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tpinfer::tokenizer_detail {

struct CombiningClassRange {
  uint32_t lo, hi;
  uint8_t ccc;
};
struct CanonicalDecomposition {
  uint32_t cp, first, second;  // second == 0: a singleton
  uint8_t composes;            // 1: a primary composite (not composition-excluded)
};
struct CompatDecomposition {
  uint32_t cp;
  uint16_t first;  // index in kCompatCodePoints
  uint8_t len;
};
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClasses_count;
extern const CanonicalDecomposition kCanonicalDecompositions[];
extern const size_t kCanonicalDecompositions_count;
extern const CompatDecomposition kCompatDecompositions[];
extern const size_t kCompatDecompositions_count;
extern const uint32_t kCompatCodePoints[];

uint8_t canonical_combining_class(uint32_t cp);

// NFC of UTF-8 text: canonical decomposition, canonical ordering, canonical
// composition (Hangul syllables algorithmically). Bytes that are not valid UTF-8
// are copied unchanged and block composition across them, as a character of
// class 0 that composes with nothing would.
std::string nfc(std::string_view text);
// The other forms, by the same rules: NFD decomposes and orders only; NFKD and
// NFKC also apply the compatibility decompositions.
std::string nfd(std::string_view text);
std::string nfkd(std::string_view text);
std::string nfkc(std::string_view text);

}  // namespace tpinfer::tokenizer_detail
