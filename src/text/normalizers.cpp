// The normalizers of Hugging Face's tokenizer.json, one struct each.
#include "text/normalizers.hpp"

#include "text/split_pattern.hpp"
#include "text/tokenizer_unicode.hpp"
#include "text/unicode_nfc.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

// NFC, NFD, NFKC, NFKD.
struct UnicodeForm final : Normalizer {
  std::string (*form)(std::string_view);
  explicit UnicodeForm(std::string (*f)(std::string_view)) : form(f) {}
  void apply(std::string& s) const override { s = form(s); }
};

struct Lowercase final : Normalizer {
  void apply(std::string& s) const override { s = to_lowercase(s); }
};

// Removes leading and/or trailing White_Space characters.
struct Strip final : Normalizer {
  bool left = true, right = true;
  void apply(std::string& s) const override {
    const std::vector<CodePoint> cps = decode_utf8(s);
    size_t a = 0, b = cps.size();
    if (left)
      while (a < b && is_whitespace(cps[a].cp)) ++a;
    if (right)
      while (b > a && is_whitespace(cps[b - 1].cp)) --b;
    const size_t from = a < cps.size() ? cps[a].offset : s.size();
    const size_t to = b < cps.size() ? cps[b].offset : s.size();
    s = s.substr(from, to - from);
  }
};

// Prepends its text to a non-empty string.
struct Prepend final : Normalizer {
  std::string prefix;
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix);
  }
};

// Replaces every match of its pattern with `content` (taken literally).
struct Replace final : Normalizer {
  std::unique_ptr<SplitPattern> pattern;
  std::string content;
  void apply(std::string& s) const override {
    std::vector<Span> m;
    pattern->find(s, m);
    if (m.empty()) return;
    std::string out;
    out.reserve(s.size() + m.size() * content.size());
    size_t prev = 0;
    for (const Span& x : m) {
      out.append(s, prev, x.begin - prev);
      out += content;
      prev = x.end;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }
};

std::shared_ptr<const Normalizer> parse_one(const json& n, const std::string& where) {
  const std::string t = type_of(n, where);
  if (t == "NFC") return std::make_shared<UnicodeForm>(nfc);
  if (t == "NFD") return std::make_shared<UnicodeForm>(nfd);
  if (t == "NFKC") return std::make_shared<UnicodeForm>(nfkc);
  if (t == "NFKD") return std::make_shared<UnicodeForm>(nfkd);
  if (t == "Lowercase") return std::make_shared<Lowercase>();
  if (t == "Strip") {
    auto st = std::make_shared<Strip>();
    st->left = opt_bool(n, "strip_left", true);
    st->right = opt_bool(n, "strip_right", true);
    return st;
  }
  if (t == "Prepend") {
    auto p = std::make_shared<Prepend>();
    p->prefix = field_str(n, "prepend", where);
    return p;
  }
  if (t == "Replace") {
    auto r = std::make_shared<Replace>();
    if (!n.contains("pattern")) bad(where + ".Replace.pattern: missing");
    r->pattern = SplitPattern::from_json(n["pattern"], where + ".Replace.pattern");
    r->content = field_str(n, "content", where + ".Replace");
    return r;
  }
  bad(where + ".type \"" + t +
      "\" is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Sequence)");
}

}  // namespace

Normalizers Normalizers::from_json(const json& node) {
  Normalizers out;
  for_each_component(
      node, "normalizer", "normalizers",
      [&](const json& n, const std::string& where) { out.steps_.push_back(parse_one(n, where)); });
  return out;
}

std::string Normalizers::run(std::string_view text) const {
  std::string s(text);
  for (const auto& step : steps_) step->apply(s);
  return s;
}

}  // namespace tpinfer::tokenizer_detail
