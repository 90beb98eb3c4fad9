#pragma once
// Unicode helpers for the tokenizer: UTF-8 decoding and the character classes
// the tokenizer uses (\p{L}, \p{N}, \p{M}, \s), lowercasing. Internal to src/text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::tokenizer_detail {

struct CodepointRange {
  uint32_t lo, hi;
};
extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRanges_count;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRanges_count;
extern const CodepointRange kMarkRanges[];
extern const size_t kMarkRanges_count;
extern const CodepointRange kCasedRanges[];
extern const size_t kCasedRanges_count;
extern const CodepointRange kCaseIgnorableRanges[];
extern const size_t kCaseIgnorableRanges_count;
struct LowercaseMapping {
  uint32_t cp;
  uint16_t first;  // index in kLowercaseCodePoints
  uint8_t len;
};
extern const LowercaseMapping kLowercaseMappings[];
extern const size_t kLowercaseMappings_count;
extern const uint32_t kLowercaseCodePoints[];

bool is_letter(uint32_t cp);      // general category L*
bool is_number(uint32_t cp);      // general category N*
bool is_mark(uint32_t cp);        // general category M*
bool is_whitespace(uint32_t cp);  // Unicode White_Space property (regex \s)

// Full Unicode lowercasing, as Rust's str::to_lowercase: each character's
// lowercase mapping, and a capital sigma that ends a word becomes final sigma.
std::string to_lowercase(std::string_view s);

// One decoded code point and where its bytes lie in the source string.
struct CodePoint {
  uint32_t cp;
  uint32_t offset;  // byte offset in the source
  uint32_t len;     // byte length (1..4); invalid bytes decode as U+FFFD, len 1
};
std::vector<CodePoint> decode_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);

// Moves the longest prefix of `pending` made of whole characters to the result,
// replacing invalid sequences with U+FFFD. When !final, a trailing sequence that
// could still become a valid character stays in `pending`.
std::string take_complete_utf8(std::string& pending, bool final);

}  // namespace tpinfer::tokenizer_detail
