// Hugging Face tokenizer.json reader and BPE encoder/decoder. See
// src/text/tokenizer.hpp for what is supported.
#include "text/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "base/error.hpp"
#include "text/tokenizer_unicode.hpp"
#include "text/unicode_nfc.hpp"

namespace tpinfer {

using json = nlohmann::json;
using namespace tokenizer_detail;

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw ModelError("tokenizer.json: " + msg);
}

enum class SplitRegex { kNone, kGpt2, kLlama3, kQwen2 };

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

SplitRegex recognise_pattern(const std::string& p) {
  if (p == kGpt2Pattern) return SplitRegex::kGpt2;
  if (p == kLlama3Pattern) return SplitRegex::kLlama3;
  if (p == kQwen2Pattern) return SplitRegex::kQwen2;
  return SplitRegex::kNone;
}

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

// Splits `text` (valid or not UTF-8) into the pieces the regex isolates.
void split_pieces(std::string_view text, SplitRegex re, std::vector<std::string_view>& out) {
  if (re == SplitRegex::kNone) {
    out.push_back(text);
    return;
  }
  const std::vector<CodePoint> v = decode_utf8(text);
  const Cps c{v};
  size_t i = 0, gap = 0;  // gap: start of unmatched code points
  auto byte_at = [&](size_t k) { return k < v.size() ? v[k].offset : text.size(); };
  while (i < v.size()) {
    size_t m = re == SplitRegex::kGpt2     ? match_gpt2(c, i)
               : re == SplitRegex::kLlama3 ? match_llama3(c, i, 3)
                                           : match_llama3(c, i, 1);
    if (m == 0) {
      ++i;
      continue;
    }
    if (gap < i) out.push_back(text.substr(byte_at(gap), byte_at(i) - byte_at(gap)));
    out.push_back(text.substr(byte_at(i), byte_at(i + m) - byte_at(i)));
    i += m;
    gap = i;
  }
  if (gap < v.size()) out.push_back(text.substr(byte_at(gap)));
}

// GPT-2's byte <-> printable-unicode map.
std::array<uint32_t, 256> byte_to_unicode() {
  std::array<uint32_t, 256> m{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) m[b] = direct[b] ? b : next++;
  return m;
}

const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

int byte_fallback_value(const std::string& tok) {  // "<0xNN>" -> NN, else -1
  if (tok.size() != 6 || tok[0] != '<' || tok[1] != '0' || tok[2] != 'x' || tok[5] != '>')
    return -1;
  auto hex = [](char ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
  };
  int h = hex(tok[3]), l = hex(tok[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
}

}  // namespace

struct Tokenizer::Impl {
  bool byte_level = false;
  bool add_prefix_space = false;  // ByteLevel pre-tokenizer option
  SplitRegex split = SplitRegex::kNone;
  bool ignore_merges = false;
  bool byte_fallback = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;

  // The normalizers, in the file's order (a byte-level file may have NFC only).
  struct Norm {
    enum { kPrepend, kReplace, kNfc } kind;
    std::string a, b;
  };
  std::vector<Norm> norms;
  std::string normalize(std::string_view seg) const;
  enum class Prepend { kNever, kFirst, kAlways };
  bool metaspace_pre = false;  // Metaspace pre-tokenizer
  std::string metaspace_repl = kMetaspace;
  Prepend metaspace_prepend = Prepend::kAlways;
  bool metaspace_split = false;
  bool strip_leading_space = false;  // decoder removes one leading space

  std::unordered_map<std::string, int32_t> vocab;  // token string -> id (incl. added)
  std::vector<std::string> id_to_token;
  std::vector<std::string> id_bytes;  // decoded bytes of each id
  std::vector<uint8_t> id_kind;       // 0 normal, 1 added, 2 added special
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, new id)
  std::array<int32_t, 256> byte_ids{};  // byte-level: id of each byte's symbol; sp: <0xNN> id
  int32_t bos = -1;

  struct Added {
    std::string content;
    int32_t id;
  };
  std::array<std::vector<Added>, 256> added_by_first;  // longest first

  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  void bpe(std::vector<int32_t>& syms, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view seg, bool at_text_start, std::vector<int32_t>& out) const;
};

// Merges symbols lowest rank first (leftmost on ties), like tokenizers' Word::merge_all.
void Tokenizer::Impl::bpe(std::vector<int32_t>& syms, std::vector<int32_t>& out) const {
  const int n = static_cast<int>(syms.size());
  if (n == 0) return;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank;
    int pos;
    int32_t new_id;
  };
  auto cmp = [](const Cand& x, const Cand& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(cmp)> q(cmp);
  auto push = [&](int i) {
    if (i < 0 || next[i] < 0) return;
    auto it = merges.find(key(syms[i], syms[next[i]]));
    if (it != merges.end()) q.push({it->second.first, i, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    Cand c = q.top();
    q.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    auto it = merges.find(key(syms[c.pos], syms[next[c.pos]]));
    if (it == merges.end() || it->second.second != c.new_id) continue;
    const int r = next[c.pos];
    syms[c.pos] = c.new_id;
    alive[r] = false;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(syms[i]);
}

// Applied to the text between added tokens, as Hugging Face does for added
// tokens that are not "normalized" (the usual case, and what the encoder matches).
std::string Tokenizer::Impl::normalize(std::string_view seg) const {
  std::string s(seg);
  for (const Norm& nm : norms) {
    if (nm.kind == Norm::kNfc)
      s = nfc(s);
    else if (nm.kind == Norm::kPrepend) {
      if (!s.empty()) s = nm.a + s;
    } else
      replace_all(s, nm.a, nm.b);
  }
  return s;
}

void Tokenizer::Impl::encode_segment(std::string_view seg, bool at_text_start,
                                     std::vector<int32_t>& out) const {
  std::vector<int32_t> syms;
  if (byte_level) {
    std::string owned;
    if (!norms.empty()) {
      owned = normalize(seg);
      seg = owned;
    }
    if (add_prefix_space && !seg.empty() && seg[0] != ' ') {
      owned = " " + std::string(seg);
      seg = owned;
    }
    std::vector<std::string_view> pieces;
    split_pieces(seg, split, pieces);
    static const std::array<uint32_t, 256> b2u = byte_to_unicode();
    std::string word;
    for (std::string_view p : pieces) {
      if (p.empty()) continue;
      if (ignore_merges) {
        word.clear();
        for (unsigned char ch : p) append_utf8(word, b2u[ch]);
        auto it = vocab.find(word);
        if (it != vocab.end() && id_kind[it->second] == 0) {
          out.push_back(it->second);
          continue;
        }
      }
      syms.clear();
      for (unsigned char ch : p) syms.push_back(byte_ids[ch]);
      bpe(syms, out);
    }
    return;
  }
  // SentencePiece-style BPE.
  std::string s = normalize(seg);
  std::vector<std::string> words;
  if (metaspace_pre) {
    replace_all(s, " ", metaspace_repl);
    const bool pre = metaspace_prepend == Prepend::kAlways ||
                     (metaspace_prepend == Prepend::kFirst && at_text_start);
    if (pre && !s.empty() && s.rfind(metaspace_repl, 0) != 0) s = metaspace_repl + s;
    if (metaspace_split) {  // each word starts with the replacement
      size_t start = 0;
      for (size_t p = s.find(metaspace_repl, 1); p != std::string::npos;
           p = s.find(metaspace_repl, p + 1)) {
        words.push_back(s.substr(start, p - start));
        start = p;
      }
      words.push_back(s.substr(start));
    } else {
      words.push_back(s);
    }
  } else {
    words.push_back(s);
  }
  for (const std::string& w : words) {
    if (w.empty()) continue;
    syms.clear();
    bool last_unk = false;
    for (const CodePoint& cp : decode_utf8(w)) {
      std::string_view ch(w.data() + cp.offset, cp.len);
      auto it = vocab.find(std::string(ch));
      if (it != vocab.end()) {
        syms.push_back(it->second);
        last_unk = false;
        continue;
      }
      if (byte_fallback) {
        for (unsigned char b : ch) syms.push_back(byte_ids[b]);
        last_unk = false;
        continue;
      }
      if (unk_id < 0)
        bad("model.unk_token: the text has a character missing from the vocab and there is no "
            "unk_token");
      if (!(fuse_unk && last_unk)) syms.push_back(unk_id);
      last_unk = true;
    }
    bpe(syms, out);
  }
}

namespace {

std::string field_str(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) bad(where + "." + key + ": missing or not a string");
  return it->get<std::string>();
}

std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where + ": not an object");
  return field_str(j, "type", where);
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ModelError("cannot open tokenizer file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str());
}

Tokenizer Tokenizer::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad("not a JSON object");
  auto impl = std::make_shared<Impl>();
  Impl& m = *impl;

  // ---- model ----
  if (!j.contains("model")) bad("model: missing");
  const json& model = j["model"];
  const std::string mtype =
      model.is_object() && !model.contains("type") ? "BPE" : type_of(model, "model");
  if (mtype != "BPE") bad("model.type \"" + mtype + "\" is not supported (only BPE)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    bad("model.vocab: missing or not an object");
  auto opt_bool = [&](const json& o, const char* k) {
    return o.contains(k) && o[k].is_boolean() && o[k].get<bool>();
  };
  auto opt_str = [&](const json& o, const char* k) {
    return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string();
  };
  m.ignore_merges = opt_bool(model, "ignore_merges");
  m.byte_fallback = opt_bool(model, "byte_fallback");
  m.fuse_unk = opt_bool(model, "fuse_unk");
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      model["dropout"].get<double>() != 0.0)
    bad("model.dropout: BPE dropout is not supported");
  if (!opt_str(model, "continuing_subword_prefix").empty())
    bad("model.continuing_subword_prefix: not supported");
  if (!opt_str(model, "end_of_word_suffix").empty()) bad("model.end_of_word_suffix: not supported");

  int32_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1 << 30))
      bad("model.vocab[\"" + it.key() + "\"]: not a valid id");
    int32_t id = it.value().get<int32_t>();
    m.vocab[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  // ---- added tokens ----
  struct AT {
    std::string content;
    int32_t id;
    bool special;
  };
  std::vector<AT> added;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) bad("added_tokens: not an array");
    size_t k = 0;
    for (const json& a : j["added_tokens"]) {
      const std::string where = "added_tokens[" + std::to_string(k++) + "]";
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer())
        bad(where + ".id: missing or not an integer");
      AT t{field_str(a, "content", where), a["id"].get<int32_t>(), opt_bool(a, "special")};
      if (t.id < 0) bad(where + ".id: negative");
      if (t.content.empty()) bad(where + ".content: empty");
      added.push_back(t);
      max_id = std::max(max_id, t.id);
    }
  }
  if (max_id < 0) bad("model.vocab: empty");
  m.id_to_token.assign(max_id + 1, std::string());
  m.id_kind.assign(max_id + 1, 0);
  for (const auto& [tok, id] : m.vocab) m.id_to_token[id] = tok;
  for (const AT& a : added) {
    m.id_to_token[a.id] = a.content;
    m.id_kind[a.id] = a.special ? 2 : 1;
    m.vocab[a.content] = a.id;
    m.added_by_first[static_cast<unsigned char>(a.content[0])].push_back({a.content, a.id});
  }
  for (auto& v : m.added_by_first)
    std::stable_sort(v.begin(), v.end(), [](const Impl::Added& x, const Impl::Added& y) {
      return x.content.size() > y.content.size();
    });

  // ---- normalizer ----
  std::vector<const json*> norms;
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    if (type_of(n, "normalizer") == "Sequence") {
      if (!n.contains("normalizers") || !n["normalizers"].is_array())
        bad("normalizer.normalizers: missing");
      for (const json& x : n["normalizers"]) norms.push_back(&x);
    } else {
      norms.push_back(&n);
    }
  }
  for (const json* np : norms) {
    const std::string t = type_of(*np, "normalizer");
    if (t == "NFC")
      m.norms.push_back({Impl::Norm::kNfc, "", ""});
    else if (t == "Prepend")
      m.norms.push_back({Impl::Norm::kPrepend, field_str(*np, "prepend", "normalizer"), ""});
    else if (t == "Replace") {
      if (!np->contains("pattern") || !(*np)["pattern"].contains("String"))
        bad("normalizer.Replace.pattern: only {\"String\": ...} patterns are supported");
      m.norms.push_back({Impl::Norm::kReplace, (*np)["pattern"]["String"].get<std::string>(),
                         field_str(*np, "content", "normalizer.Replace")});
    } else
      bad("normalizer.type \"" + t + "\" is not supported (NFC, Prepend, Replace)");
  }

  // ---- pre-tokenizer ----
  std::vector<const json*> pres;
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    const json& p = j["pre_tokenizer"];
    if (type_of(p, "pre_tokenizer") == "Sequence") {
      if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
        bad("pre_tokenizer.pretokenizers: missing");
      for (const json& x : p["pretokenizers"]) pres.push_back(&x);
    } else {
      pres.push_back(&p);
    }
  }
  for (const json* pp : pres) {
    const json& p = *pp;
    const std::string t = type_of(p, "pre_tokenizer");
    if (t == "ByteLevel") {
      m.byte_level = true;
      m.add_prefix_space = opt_bool(p, "add_prefix_space");
      if (!p.contains("use_regex") || opt_bool(p, "use_regex")) {
        if (m.split != SplitRegex::kNone) bad("pre_tokenizer: two split regexes are not supported");
        m.split = SplitRegex::kGpt2;
      }
    } else if (t == "Split") {
      const std::string where = "pre_tokenizer.Split";
      if (!p.contains("pattern") || !p["pattern"].contains("Regex"))
        bad(where + ".pattern: only Regex patterns are supported");
      SplitRegex r = recognise_pattern(p["pattern"]["Regex"].get<std::string>());
      if (r == SplitRegex::kNone)
        bad(where +
            ".pattern.Regex: unsupported regex (only the GPT-2, Llama 3 and Qwen2 patterns are "
            "built in)");
      if (opt_str(p, "behavior") != "Isolated" || opt_bool(p, "invert"))
        bad(where + ".behavior: only Isolated, invert=false is supported");
      if (m.split != SplitRegex::kNone) bad("pre_tokenizer: two split regexes are not supported");
      m.split = r;
    } else if (t == "Metaspace") {
      m.metaspace_pre = true;
      m.metaspace_repl = field_str(p, "replacement", "pre_tokenizer.Metaspace");
      std::string scheme = opt_str(p, "prepend_scheme");
      if (scheme.empty())
        scheme =
            p.contains("add_prefix_space") && !opt_bool(p, "add_prefix_space") ? "never" : "always";
      if (scheme == "always")
        m.metaspace_prepend = Impl::Prepend::kAlways;
      else if (scheme == "first")
        m.metaspace_prepend = Impl::Prepend::kFirst;
      else if (scheme == "never")
        m.metaspace_prepend = Impl::Prepend::kNever;
      else
        bad("pre_tokenizer.Metaspace.prepend_scheme \"" + scheme + "\" is not supported");
      m.metaspace_split = !p.contains("split") || opt_bool(p, "split");
    } else {
      bad("pre_tokenizer.type \"" + t + "\" is not supported (ByteLevel, Split, Metaspace)");
    }
  }
  if (m.byte_level && (m.metaspace_pre ||
                       std::any_of(m.norms.begin(), m.norms.end(),
                                   [](const Impl::Norm& n) { return n.kind != Impl::Norm::kNfc; })))
    bad("pre_tokenizer: ByteLevel mixed with Metaspace/Prepend/Replace is not supported");
  if (!m.byte_level && m.split != SplitRegex::kNone)
    bad("pre_tokenizer: a Split regex without ByteLevel is not supported");

  // ---- decoder ----
  if (!m.byte_level) {
    std::vector<const json*> decs;
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      const json& d = j["decoder"];
      if (type_of(d, "decoder") == "Sequence") {
        if (!d.contains("decoders") || !d["decoders"].is_array()) bad("decoder.decoders: missing");
        for (const json& x : d["decoders"]) decs.push_back(&x);
      } else {
        decs.push_back(&d);
      }
    }
    bool replaces_meta = false;
    for (const json* dp : decs) {
      const std::string t = type_of(*dp, "decoder");
      if (t == "Strip") {
        if (opt_str(*dp, "content") == " " && dp->value("start", 0) == 1 &&
            dp->value("stop", 0) == 0)
          m.strip_leading_space = true;
        else
          bad("decoder.Strip: only content \" \", start 1, stop 0 is supported");
      } else if (t == "Metaspace") {
        replaces_meta = true;
        m.strip_leading_space = m.metaspace_prepend != Impl::Prepend::kNever;
      } else if (t == "Replace") {
        replaces_meta = true;
      } else if (t != "ByteFallback" && t != "Fuse") {
        bad("decoder.type \"" + t + "\" is not supported with a SentencePiece-style model");
      }
    }
    if (!replaces_meta)
      bad("decoder: expected Replace(\"▁\", \" \") or Metaspace for a model without ByteLevel");
  }

  // ---- byte map / byte fallback ids ----
  if (m.byte_level) {
    const auto b2u = byte_to_unicode();
    std::unordered_map<uint32_t, uint8_t> u2b;
    for (int b = 0; b < 256; ++b) {
      u2b[b2u[b]] = static_cast<uint8_t>(b);
      std::string s;
      append_utf8(s, b2u[b]);
      auto it = m.vocab.find(s);
      if (it == m.vocab.end())
        bad("model.vocab: byte-level vocab lacks the symbol of byte " + std::to_string(b));
      m.byte_ids[b] = it->second;
    }
    m.id_bytes.resize(m.id_to_token.size());
    for (size_t id = 0; id < m.id_to_token.size(); ++id) {
      const std::string& tok = m.id_to_token[id];
      if (m.id_kind[id] != 0) {
        m.id_bytes[id] = tok;
        continue;
      }
      std::string bytes;
      for (const CodePoint& cp : decode_utf8(tok)) {
        auto it = u2b.find(cp.cp);
        if (it != u2b.end())
          bytes += static_cast<char>(it->second);
        else
          bytes.append(tok, cp.offset, cp.len);  // not a byte-level symbol: keep as is
      }
      m.id_bytes[id] = std::move(bytes);
    }
  } else {
    m.byte_ids.fill(-1);
    m.id_bytes.resize(m.id_to_token.size());
    for (size_t id = 0; id < m.id_to_token.size(); ++id) {
      std::string tok = m.id_to_token[id];
      if (m.id_kind[id] == 0) {
        int b = m.byte_fallback ? byte_fallback_value(tok) : -1;
        if (b >= 0) {
          m.byte_ids[b] = static_cast<int32_t>(id);
          tok = std::string(1, static_cast<char>(b));
        } else
          replace_all(tok, m.metaspace_repl, " ");
      }
      m.id_bytes[id] = std::move(tok);
    }
    if (m.byte_fallback)
      for (int b = 0; b < 256; ++b)
        if (m.byte_ids[b] < 0)
          bad("model.vocab: byte_fallback is set but <0x" +
              std::string(1, "0123456789ABCDEF"[b >> 4]) + "0123456789ABCDEF"[b & 15] +
              "> is missing");
    std::string unk = opt_str(model, "unk_token");
    if (!unk.empty()) {
      auto it = m.vocab.find(unk);
      if (it == m.vocab.end()) bad("model.unk_token \"" + unk + "\" is not in the vocab");
      m.unk_id = it->second;
    }
  }

  // ---- merges ----
  if (!model.contains("merges") || !model["merges"].is_array())
    bad("model.merges: missing or not an array");
  int32_t rank = 0;
  for (const json& mg : model["merges"]) {
    const std::string where = "model.merges[" + std::to_string(rank) + "]";
    std::string a, b;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        bad(where + ": expected \"a b\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      bad(where + ": expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = m.vocab.find(a), ib = m.vocab.find(b), inew = m.vocab.find(a + b);
    if (ia == m.vocab.end() || ib == m.vocab.end())
      bad(where + ": \"" + (ia == m.vocab.end() ? a : b) + "\" is not in the vocab");
    if (inew == m.vocab.end())
      bad(where + ": the merged token \"" + a + b + "\" is not in the vocab");
    m.merges.emplace(Impl::key(ia->second, ib->second), std::make_pair(rank, inew->second));
    ++rank;
  }

  // ---- BOS: the first special token of a TemplateProcessing post-processor ----
  std::vector<const json*> posts;
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    const json& p = j["post_processor"];
    if (p.value("type", "") == "Sequence" && p.contains("processors"))
      for (const json& x : p["processors"]) posts.push_back(&x);
    else
      posts.push_back(&p);
  }
  for (const json* pp : posts) {
    if (pp->value("type", "") != "TemplateProcessing" || !pp->contains("single") ||
        !(*pp)["single"].is_array())
      continue;
    const json& single = (*pp)["single"];
    if (!single.empty() && single[0].contains("SpecialToken")) {
      const std::string name = single[0]["SpecialToken"].value("id", "");
      if (pp->contains("special_tokens") && (*pp)["special_tokens"].contains(name) &&
          (*pp)["special_tokens"][name].contains("ids") &&
          !(*pp)["special_tokens"][name]["ids"].empty())
        m.bos = (*pp)["special_tokens"][name]["ids"][0].get<int32_t>();
      else if (auto it = m.vocab.find(name); it != m.vocab.end())
        m.bos = it->second;
    }
  }
  if (m.bos < 0 && posts.empty() == false &&
      m.vocab.count("<|begin_of_text|>"))  // Llama 3 files without a template
    m.bos = m.vocab["<|begin_of_text|>"];

  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const Impl& m = *impl_;
  // Invalid UTF-8 is read as Python's bytes.decode("utf-8", "replace") and Rust's
  // from_utf8_lossy read it (U+FFFD per maximal invalid subsequence), so the ids
  // are Hugging Face's for the text its callers would have.
  std::string lossy;
  if (!is_valid_utf8(text)) {
    std::string pending(text);
    lossy = take_complete_utf8(pending, /*final=*/true);
    text = lossy;
  }
  std::vector<int32_t> out;
  if (add_bos && m.bos >= 0) out.push_back(m.bos);
  size_t seg_start = 0;
  for (size_t i = 0; i < text.size();) {
    const Impl::Added* hit = nullptr;
    for (const Impl::Added& a : m.added_by_first[static_cast<unsigned char>(text[i])])
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    if (seg_start < i) m.encode_segment(text.substr(seg_start, i - seg_start), seg_start == 0, out);
    out.push_back(hit->id);
    i += hit->content.size();
    seg_start = i;
  }
  if (seg_start < text.size()) m.encode_segment(text.substr(seg_start), seg_start == 0, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  StreamDecoder d(*this, skip_special_tokens);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.finish();
  return out;
}

int32_t Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  return it == impl_->vocab.end() ? -1 : it->second;
}
size_t Tokenizer::vocab_size() const {
  return impl_->id_to_token.size();
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos;
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_kind.size() && impl_->id_kind[id] == 2;
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  const Tokenizer::Impl& m = tok_->impl();
  if (id < 0 || static_cast<size_t>(id) >= m.id_bytes.size())
    throw InputError("token id " + std::to_string(id) + " is out of range (vocab size " +
                     std::to_string(m.id_bytes.size()) + ")");
  if (skip_special_ && m.id_kind[id] == 2) return {};
  std::string_view b = m.id_bytes[id];
  if (at_start_ && !b.empty()) {
    at_start_ = false;
    if (m.strip_leading_space && b[0] == ' ') b.remove_prefix(1);
  }
  pending_.append(b);
  return take_complete_utf8(pending_, false);
}

std::string StreamDecoder::finish() {
  std::string out = take_complete_utf8(pending_, true);
  at_start_ = true;
  return out;
}

}  // namespace tpinfer
