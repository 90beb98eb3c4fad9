// Split patterns (literal strings and regexes) and Hugging Face's rules for
// the pieces between their matches.
#include "text/split_pattern.hpp"

#include "text/split_regex_builtin.hpp"
#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

class LiteralPattern final : public SplitPattern {
 public:
  explicit LiteralPattern(std::string s) : s_(std::move(s)) {}
  void find(std::string_view text, std::vector<Span>& out) const override {
    if (s_.empty()) return;  // an empty pattern matches nothing (Rust's matcher gives no split)
    for (size_t p = text.find(s_); p != std::string_view::npos; p = text.find(s_, p + s_.size()))
      out.push_back({p, p + s_.size()});
  }

 private:
  std::string s_;
};

class BuiltinRegexPattern final : public SplitPattern {
 public:
  explicit BuiltinRegexPattern(BuiltinRegex re) : re_(re) {}
  void find(std::string_view text, std::vector<Span>& out) const override {
    find_builtin_matches(re_, text, out);
  }

 private:
  BuiltinRegex re_;
};

class CodePointPattern final : public SplitPattern {
 public:
  explicit CodePointPattern(bool (*pred)(uint32_t)) : pred_(pred) {}
  void find(std::string_view text, std::vector<Span>& out) const override {
    for (const CodePoint& c : decode_utf8(text))
      if (pred_(c.cp)) out.push_back({c.offset, c.offset + c.len});
  }

 private:
  bool (*pred_)(uint32_t);
};

}  // namespace

std::unique_ptr<SplitPattern> SplitPattern::code_points(bool (*pred)(uint32_t)) {
  return std::make_unique<CodePointPattern>(pred);
}

std::unique_ptr<SplitPattern> SplitPattern::literal(std::string s) {
  return std::make_unique<LiteralPattern>(std::move(s));
}

std::unique_ptr<SplitPattern> SplitPattern::regex(const std::string& re, const std::string& where) {
  const BuiltinRegex b = recognise_builtin_regex(re);
  if (b == BuiltinRegex::kNone)
    bad(where +
        ".Regex: unsupported regex (only the GPT-2, Llama 3 and Qwen2 patterns are built in)");
  return std::make_unique<BuiltinRegexPattern>(b);
}

std::unique_ptr<SplitPattern> SplitPattern::from_json(const json& pattern,
                                                      const std::string& where) {
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
    return regex(pattern["Regex"].get<std::string>(), where);
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string())
    return literal(pattern["String"].get<std::string>());
  bad(where + ": expected {\"String\": ...} or {\"Regex\": ...}");
}

SplitBehavior parse_split_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  bad(where + " \"" + s +
      "\" is not a behavior (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

void split_by_matches(size_t text_len, const std::vector<Span>& matches, SplitBehavior behavior,
                      bool invert, std::vector<Span>& out) {
  struct Part {
    Span s;
    bool match;
  };
  // The text as alternating parts; an empty match is a part too (it still cuts).
  std::vector<Part> parts;
  parts.reserve(2 * matches.size() + 1);
  size_t prev = 0;
  for (const Span& m : matches) {
    if (prev != m.begin) parts.push_back({{prev, m.begin}, invert});
    parts.push_back({m, !invert});
    prev = m.end;
  }
  if (prev != text_len) parts.push_back({{prev, text_len}, invert});

  const size_t first = out.size();
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts)
        if (!p.match) out.push_back(p.s);
      break;
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) out.push_back(p.s);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const Part& p : parts) {
        if (p.match && !prev_match && out.size() > first)
          out.back().end = p.s.end;
        else
          out.push_back(p.s);
        prev_match = p.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool next_match = false;  // walking backwards: whether the part after was a match
      std::vector<Span> rev;
      for (size_t i = parts.size(); i-- > 0;) {
        const Part& p = parts[i];
        if (p.match && !next_match && !rev.empty())
          rev.back().begin = p.s.begin;
        else
          rev.push_back(p.s);
        next_match = p.match;
      }
      out.insert(out.end(), rev.rbegin(), rev.rend());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const Part& p : parts) {
        if (p.match == prev_match && out.size() > first)
          out.back().end = p.s.end;
        else
          out.push_back(p.s);
        prev_match = p.match;
      }
      break;
    }
  }
  // Empty pieces are dropped.
  size_t k = first;
  for (size_t i = first; i < out.size(); ++i)
    if (out[i].begin != out[i].end) out[k++] = out[i];
  out.resize(k);
}

}  // namespace tpinfer::tokenizer_detail
