// Hand-written matchers for the GPT-2, Llama 3 and Qwen2 split regexes.
#include "text/split_regex_builtin.hpp"

#include <algorithm>

#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {

extern const char* const kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
extern const char* const kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
extern const char* const kQwen2SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

BuiltinRegex recognise_builtin_regex(const std::string& p) {
  if (p == kGpt2SplitRegex) return BuiltinRegex::kGpt2;
  if (p == kLlama3SplitRegex) return BuiltinRegex::kLlama3;
  if (p == kQwen2SplitRegex) return BuiltinRegex::kQwen2;
  return BuiltinRegex::kNone;
}

namespace {

// ---- hand-coded matchers for the split regexes ------------------------------
// Each returns the length (in code points) of the match starting at i, 0 if none.
// Alternatives are tried in order, as a backtracking regex engine does.
struct Cps {
  const std::vector<CodePoint>& v;
  size_t n() const { return v.size(); }
  uint32_t at(size_t i) const { return v[i].cp; }
  bool L(size_t i) const { return i < n() && is_letter(at(i)); }
  bool N(size_t i) const { return i < n() && is_number(at(i)); }
  bool S(size_t i) const { return i < n() && is_whitespace(at(i)); }
  bool other(size_t i) const {
    return i < n() && !is_whitespace(at(i)) && !is_letter(at(i)) && !is_number(at(i));
  }
  bool crlf(size_t i) const { return i < n() && (at(i) == '\r' || at(i) == '\n'); }
  template <class F>
  size_t run(size_t i, F f) const {
    size_t j = i;
    while (f(j)) ++j;
    return j - i;
  }
};

size_t match_contraction(const Cps& c, size_t i, bool icase) {
  if (c.at(i) != '\'') return 0;
  static const char* const kSuffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
  for (const char* suf : kSuffixes) {
    size_t k = 0;
    for (; suf[k]; ++k) {
      if (i + 1 + k >= c.n()) break;
      uint32_t ch = c.at(i + 1 + k);
      if (icase && ch >= 'A' && ch <= 'Z') ch += 32;
      if (ch != static_cast<uint32_t>(suf[k])) break;
    }
    if (!suf[k]) return 1 + k;
  }
  return 0;
}

// \s+(?!\S) then \s+
size_t match_trailing_space(const Cps& c, size_t i) {
  size_t k = c.run(i, [&](size_t j) { return c.S(j); });
  if (k == 0) return 0;
  if (i + k == c.n()) return k;
  if (k >= 2) return k - 1;  // \s+(?!\S): leave the last space for the next word
  return k;                  // \s+
}

size_t match_gpt2(const Cps& c, size_t i) {
  if (size_t m = match_contraction(c, i, false)) return m;
  const bool sp = c.at(i) == ' ';
  auto class_run = [&](auto pred) -> size_t {  // ` ?X+`
    if (sp && pred(i + 1)) return 1 + c.run(i + 1, pred);
    if (pred(i)) return c.run(i, pred);
    return 0;
  };
  if (size_t m = class_run([&](size_t j) { return c.L(j); })) return m;
  if (size_t m = class_run([&](size_t j) { return c.N(j); })) return m;
  if (size_t m = class_run([&](size_t j) { return c.other(j); })) return m;
  return match_trailing_space(c, i);
}

size_t match_llama3(const Cps& c, size_t i, size_t max_digits) {
  if (size_t m = match_contraction(c, i, true)) return m;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  {
    const bool opt = !c.crlf(i) && !c.L(i) && !c.N(i);
    if (opt && c.L(i + 1)) return 1 + c.run(i + 1, [&](size_t j) { return c.L(j); });
    if (c.L(i)) return c.run(i, [&](size_t j) { return c.L(j); });
  }
  // \p{N}{1,max}
  if (c.N(i)) return std::min(max_digits, c.run(i, [&](size_t j) { return c.N(j); }));
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  {
    size_t s = 0;
    if (c.at(i) == ' ' && c.other(i + 1)) s = 1;
    if (c.other(i + s)) {
      size_t j = i + s + c.run(i + s, [&](size_t k) { return c.other(k); });
      j += c.run(j, [&](size_t k) { return c.crlf(k); });
      return j - i;
    }
  }
  // \s*[\r\n]+ : end after the last CR/LF of the whitespace run
  {
    size_t k = c.run(i, [&](size_t j) { return c.S(j); });
    for (size_t p = i + k; p > i; --p)
      if (c.crlf(p - 1)) return p - i;
  }
  return match_trailing_space(c, i);
}

}  // namespace

void find_builtin_matches(BuiltinRegex re, std::string_view text, std::vector<Span>& out) {
  if (re == BuiltinRegex::kNone) return;
  const std::vector<CodePoint> v = decode_utf8(text);
  const Cps c{v};
  auto byte_at = [&](size_t k) { return k < v.size() ? v[k].offset : text.size(); };
  for (size_t i = 0; i < v.size();) {
    const size_t m = re == BuiltinRegex::kGpt2     ? match_gpt2(c, i)
                     : re == BuiltinRegex::kLlama3 ? match_llama3(c, i, 3)
                                                   : match_llama3(c, i, 1);
    if (m == 0) {
      ++i;
      continue;
    }
    out.push_back({byte_at(i), byte_at(i + m)});
    i += m;
  }
}

}  // namespace tpinfer::tokenizer_detail
