// Split patterns (literal strings and regexes) and Hugging Face's rules for
// the pieces between their matches.
#include "text/split_pattern.hpp"

#include <pcre2.h>

#include "base/error.hpp"
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

// Hugging Face compiles its regexes with Oniguruma, where \s is the Unicode
// White_Space property; PCRE2's \s also takes U+180E. Spelled out instead.
constexpr const char* kWhiteSpace =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

std::string with_white_space_classes(const std::string& re) {
  std::string out;
  out.reserve(re.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      const char e = re[++i];
      if (e == 's')
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      else if (e == 'S' && !in_class)
        out += "[^" + std::string(kWhiteSpace) + "]";
      else
        out += {c, e};
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      if (i + 1 < re.size() && re[i + 1] == '^') out += re[++i];
      if (i + 1 < re.size() && re[i + 1] == ']') out += re[++i];  // a literal ] first
    } else if (in_class && c == '[' && i + 1 < re.size() && re[i + 1] == ':') {
      const size_t end = re.find(":]", i + 2);  // a POSIX class inside a class
      if (end != std::string::npos) {
        out.append(re, i + 1, end + 2 - (i + 1));
        i = end + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

// What a thread needs to run any pattern: one match-data block (only the
// whole match is read) and a JIT stack larger than the default 32 KiB, as
// \s+(?!\S) over a long run of spaces backtracks deeply.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

class Pcre2Pattern final : public SplitPattern {
 public:
  Pcre2Pattern(const std::string& re, const std::string& where) {
    const std::string translated = with_white_space_classes(re);
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &at, nullptr);
    if (!code_)
      bad(where + ".Regex: " + pcre2_message(err) + " (PCRE2, at offset " + std::to_string(at) +
          " of the pattern as translated: " + translated + ")");
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Pcre2Pattern() override { pcre2_code_free(code_); }
  Pcre2Pattern(const Pcre2Pattern&) = delete;
  Pcre2Pattern& operator=(const Pcre2Pattern&) = delete;

  // Matches left to right as Rust's onig crate iterates them: an empty match
  // right where the last match ended is skipped by moving on one character.
  void find(std::string_view text, std::vector<Span>& out) const override {
    thread_local MatchScratch scratch;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t from = 0;
    size_t last_match_end = std::string_view::npos;
    while (from <= text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), from, 0, scratch.data,
                                            scratch.context)
                          : pcre2_match(code_, subject, text.size(), from, PCRE2_NO_UTF_CHECK,
                                        scratch.data, scratch.context);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0)
        throw InputError("tokenizer: a split regex failed on the text: " + pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
      const size_t b = ov[0], e = ov[1];
      if (b == e && e == last_match_end) {
        if (from >= text.size()) return;
        from += utf8_length(text, from);
        continue;
      }
      out.push_back({b, e});
      from = e;
      last_match_end = e;
    }
  }

 private:
  static size_t utf8_length(std::string_view t, size_t i) {
    const auto b = static_cast<unsigned char>(t[i]);
    const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    return std::min(n, t.size() - i);
  }
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
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
  return std::make_unique<Pcre2Pattern>(re, where);
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
