// The pre-tokenizers of Hugging Face's tokenizer.json, one struct each.
#include "text/pre_tokenizers.hpp"

#include "text/split_pattern.hpp"
#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

// GPT-2's split regex: ByteLevel's own when use_regex is on.
constexpr const char* kGpt2SplitRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Cuts each piece at a pattern's matches (Split, and the fixed-pattern ones).
void split_pieces(const SplitPattern& pattern, SplitBehavior behavior, bool invert,
                  const std::vector<PreToken>& in, std::vector<PreToken>& out) {
  std::vector<Span> matches, spans;
  for (const PreToken& p : in) {
    matches.clear();
    spans.clear();
    pattern.find(p.text, matches);
    split_by_matches(p.text.size(), matches, behavior, invert, spans);
    for (const Span& s : spans)
      out.push_back({p.text.substr(s.begin, s.end - s.begin), p.at_origin && s.begin == 0});
  }
}

struct Split final : PreTokenizer {
  std::unique_ptr<SplitPattern> pattern;
  SplitBehavior behavior;
  bool invert;
  void apply(const std::vector<PreToken>& in, std::vector<PreToken>& out,
             PreTokenArena&) const override {
    split_pieces(*pattern, behavior, invert, in, out);
  }
};

// Prepends a space (add_prefix_space) and splits with GPT-2's regex
// (use_regex); mapping the bytes to GPT-2's alphabet is left to the model,
// which reads the pieces as bytes.
struct ByteLevel final : PreTokenizer {
  bool add_prefix_space = false;
  std::unique_ptr<SplitPattern> regex;  // null: use_regex false
  void apply(const std::vector<PreToken>& in, std::vector<PreToken>& out,
             PreTokenArena& arena) const override {
    std::vector<PreToken> spaced;
    const std::vector<PreToken>* src = &in;
    if (add_prefix_space) {
      spaced.reserve(in.size());
      for (const PreToken& p : in) {
        if (!p.text.empty() && p.text[0] != ' ') {
          arena.push_back(" " + std::string(p.text));
          spaced.push_back({arena.back(), p.at_origin});
        } else {
          spaced.push_back(p);
        }
      }
      src = &spaced;
    }
    if (regex)
      split_pieces(*regex, SplitBehavior::kIsolated, false, *src, out);
    else
      out.insert(out.end(), src->begin(), src->end());
  }
};

// SentencePiece's whitespace handling: spaces become `replacement`, which is
// prepended per prepend_scheme and starts each piece when split is on.
struct Metaspace final : PreTokenizer {
  enum class Prepend { kAlways, kFirst, kNever };
  std::string replacement;
  Prepend prepend = Prepend::kAlways;
  bool split = true;
  void apply(const std::vector<PreToken>& in, std::vector<PreToken>& out,
             PreTokenArena& arena) const override {
    for (const PreToken& p : in) {
      std::string s;
      s.reserve(p.text.size() + 8);
      for (char ch : p.text)
        if (ch == ' ')
          s += replacement;
        else
          s += ch;
      const bool starts = s.compare(0, replacement.size(), replacement) == 0;
      if (!s.empty() && !starts &&
          (prepend == Prepend::kAlways || (prepend == Prepend::kFirst && p.at_origin)))
        s.insert(0, replacement);
      arena.push_back(std::move(s));
      const std::string_view t = arena.back();
      if (!split) {
        if (!t.empty()) out.push_back({t, p.at_origin});
        continue;
      }
      // Each piece starts at a replacement (MergedWithNext).
      size_t start = 0;
      for (size_t q = t.find(replacement, 1); q != std::string_view::npos;
           q = t.find(replacement, q + 1)) {
        out.push_back({t.substr(start, q - start), p.at_origin && start == 0});
        start = q;
      }
      if (start < t.size()) out.push_back({t.substr(start), p.at_origin && start == 0});
    }
  }
};

// A Split with a fixed pattern (Whitespace, Punctuation, Digits, ...).
std::shared_ptr<Split> fixed_split(std::unique_ptr<SplitPattern> pattern, SplitBehavior behavior,
                                   bool invert) {
  auto s = std::make_shared<Split>();
  s->pattern = std::move(pattern);
  s->behavior = behavior;
  s->invert = invert;
  return s;
}

bool is_white_space(uint32_t cp) {
  return is_whitespace(cp);
}
bool is_numeric(uint32_t cp) {
  return is_number(cp);
}  // Rust's char::is_numeric

std::shared_ptr<const PreTokenizer> parse_one(const json& p, const std::string& where,
                                              bool& byte_level) {
  const std::string t = type_of(p, where);
  if (t == "ByteLevel") {
    auto b = std::make_shared<ByteLevel>();
    b->add_prefix_space = opt_bool(p, "add_prefix_space");
    if (opt_bool(p, "use_regex", true))
      b->regex = SplitPattern::regex(kGpt2SplitRegex, where + ".ByteLevel");
    byte_level = true;  // trim_offsets moves offsets only: nothing to do for ids
    return b;
  }
  if (t == "Split") {
    if (!p.contains("pattern")) bad(where + ".Split.pattern: missing");
    return fixed_split(SplitPattern::from_json(p["pattern"], where + ".Split.pattern"),
                       parse_split_behavior(opt_str(p, "behavior"), where + ".Split.behavior"),
                       opt_bool(p, "invert"));
  }
  if (t == "Metaspace") {
    auto m = std::make_shared<Metaspace>();
    m->replacement = field_str(p, "replacement", where + ".Metaspace");
    std::string scheme = opt_str(p, "prepend_scheme");
    if (scheme.empty())  // files before prepend_scheme said add_prefix_space
      scheme =
          p.contains("add_prefix_space") && !opt_bool(p, "add_prefix_space") ? "never" : "always";
    if (scheme == "always")
      m->prepend = Metaspace::Prepend::kAlways;
    else if (scheme == "first")
      m->prepend = Metaspace::Prepend::kFirst;
    else if (scheme == "never")
      m->prepend = Metaspace::Prepend::kNever;
    else
      bad(where + ".Metaspace.prepend_scheme \"" + scheme + "\" is not supported");
    m->split = opt_bool(p, "split", true);
    return m;
  }
  if (t == "Whitespace")  // \w+|[^\w\s]+, keeping only the matches
    return fixed_split(
        SplitPattern::regex(R"([\p{L}\p{M}\p{N}\p{Pc}]+|[^\p{L}\p{M}\p{N}\p{Pc}\s]+)", where),
        SplitBehavior::kRemoved, true);
  if (t == "WhitespaceSplit")
    return fixed_split(SplitPattern::code_points(is_white_space), SplitBehavior::kRemoved, false);
  if (t == "Punctuation")  // Unicode P* and every ASCII punctuation character
    return fixed_split(
        SplitPattern::regex(R"([\p{P}!-/:-@\[-`{-~])", where),
        parse_split_behavior(p.value("behavior", "Isolated"), where + ".Punctuation.behavior"),
        false);
  if (t == "Digits")
    return fixed_split(
        SplitPattern::code_points(is_numeric),
        opt_bool(p, "individual_digits") ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
        false);
  if (t == "CharDelimiterSplit")
    return fixed_split(SplitPattern::literal(field_str(p, "delimiter", where)),
                       SplitBehavior::kRemoved, false);
  bad(where + ".type \"" + t +
      "\" is not supported (Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, "
      "Punctuation, Digits, CharDelimiterSplit, Sequence)");
}

}  // namespace

PreTokenizers PreTokenizers::from_json(const json& node) {
  PreTokenizers out;
  for_each_component(node, "pre_tokenizer", "pretokenizers",
                     [&](const json& p, const std::string& where) {
                       if (out.byte_level_)
                         bad(where + ": a pre-tokenizer after ByteLevel is not supported");
                       out.steps_.push_back(parse_one(p, where, out.byte_level_));
                     });
  return out;
}

void PreTokenizers::run(std::vector<PreToken>& pieces, std::vector<PreToken>& scratch,
                        PreTokenArena& arena) const {
  for (const auto& step : steps_) {
    scratch.clear();
    step->apply(pieces, scratch, arena);
    pieces.swap(scratch);
  }
}

}  // namespace tpinfer::tokenizer_detail
