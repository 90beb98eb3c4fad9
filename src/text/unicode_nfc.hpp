#pragma once
// Unicode Normalization Form C (UAX #15), for the tokenizer's "NFC" normalizer
// (Qwen2's tokenizer.json has one). Internal to src/text. The tables come from
// tools/gen_unicode_nfc.py (src/text/tokenizer_nfc_tables.cpp).
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
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClasses_count;
extern const CanonicalDecomposition kCanonicalDecompositions[];
extern const size_t kCanonicalDecompositions_count;

uint8_t canonical_combining_class(uint32_t cp);

// NFC of UTF-8 text: canonical decomposition, canonical ordering, canonical
// composition (Hangul syllables algorithmically). Bytes that are not valid UTF-8
// are copied unchanged and block composition across them, as a character of
// class 0 that composes with nothing would.
std::string nfc(std::string_view text);

}  // namespace tpinfer::tokenizer_detail
