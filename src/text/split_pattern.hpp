#pragma once
// The pattern of a Split pre-tokenizer or a Replace normalizer/decoder:
// {"String": "..."} (matched literally) or {"Regex": "..."}, and how the
// pieces between matches are kept (Hugging Face's SplitDelimiterBehavior).
// Internal to src/text.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct Span {
  size_t begin, end;  // byte offsets
};

class SplitPattern {
 public:
  virtual ~SplitPattern() = default;
  // Appends the non-overlapping matches in `text` (valid UTF-8), left to right.
  virtual void find(std::string_view text, std::vector<Span>& out) const = 0;
  // {"String": s} or {"Regex": r}; `where` names the field for errors.
  static std::unique_ptr<SplitPattern> from_json(const json& pattern, const std::string& where);
  static std::unique_ptr<SplitPattern> literal(std::string s);
  // A regex in Hugging Face's (Oniguruma's) syntax, run by PCRE2 (UTF, Unicode
  // properties, JIT), compiled once. (Hand-written matchers for the GPT-2,
  // Llama 3 and Qwen2 patterns were slower than PCRE2's JIT and are gone.)
  static std::unique_ptr<SplitPattern> regex(const std::string& re, const std::string& where);
  // Each code point for which pred is true is a match of its own (Hugging
  // Face's split on a char predicate).
  static std::unique_ptr<SplitPattern> code_points(bool (*pred)(uint32_t));
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
SplitBehavior parse_split_behavior(const std::string& s, const std::string& where);

// The pieces of `text` (as spans) when split at `matches` with `behavior`
// (invert: the matches are the parts between the pattern's matches). Empty
// pieces are dropped, as Hugging Face does.
void split_by_matches(size_t text_len, const std::vector<Span>& matches, SplitBehavior behavior,
                      bool invert, std::vector<Span>& out);

}  // namespace tpinfer::tokenizer_detail
