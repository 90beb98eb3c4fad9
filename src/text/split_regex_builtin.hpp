#pragma once
// Hand-written matchers for the three split regexes most tokenizers use
// (GPT-2's, Llama 3's, Qwen2's), found by the pattern's exact text.
// Internal to src/text.
#include <string>
#include <string_view>
#include <vector>

#include "text/split_pattern.hpp"

namespace tpinfer::tokenizer_detail {

enum class BuiltinRegex { kNone, kGpt2, kLlama3, kQwen2 };

extern const char* const kGpt2SplitRegex;  // also ByteLevel's own regex
extern const char* const kLlama3SplitRegex;
extern const char* const kQwen2SplitRegex;

BuiltinRegex recognise_builtin_regex(const std::string& pattern);
// The regex's matches in `text`, left to right, as a backtracking engine finds them.
void find_builtin_matches(BuiltinRegex re, std::string_view text, std::vector<Span>& out);

}  // namespace tpinfer::tokenizer_detail
