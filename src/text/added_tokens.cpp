// Added-token matching as Hugging Face's AddedVocabulary does it.
#include "text/added_tokens.hpp"

#include <algorithm>

#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

// \w of Rust's regex crate, which single_word uses.
bool is_word(uint32_t cp) {
  return cp == '_' || is_letter(cp) || is_number(cp) || is_mark(cp) || cp == 0x200C || cp == 0x200D;
}

// The code point that ends text[0, end), and the one that starts text[begin...).
uint32_t last_code_point(std::string_view text, size_t end) {
  size_t b = end;
  while (b > 0 && (static_cast<unsigned char>(text[b - 1]) & 0xC0) == 0x80) --b;
  if (b > 0) --b;
  const auto cps = decode_utf8(text.substr(b, end - b));
  return cps.empty() ? 0 : cps.back().cp;
}
uint32_t first_code_point(std::string_view text, size_t begin) {
  const auto cps = decode_utf8(text.substr(begin, std::min<size_t>(4, text.size() - begin)));
  return cps.empty() ? 0 : cps.front().cp;
}

}  // namespace

void AddedTokens::Trie::add(std::string_view s, int32_t token) {
  if (nodes.empty()) {
    nodes.emplace_back();  // node 0: the root (its children live in `root`)
    root.fill(-1);
  }
  int32_t cur = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[k]);
    int32_t nxt = -1;
    if (cur == 0) {
      nxt = root[b];
    } else {
      auto& v = nodes[cur].next;
      auto it = std::lower_bound(v.begin(), v.end(), std::make_pair(b, int32_t{-1}));
      if (it != v.end() && it->first == b) nxt = it->second;
    }
    if (nxt < 0) {
      nxt = static_cast<int32_t>(nodes.size());
      nodes.emplace_back();
      if (cur == 0) {
        root[b] = nxt;
      } else {
        auto& v = nodes[cur].next;
        v.insert(std::lower_bound(v.begin(), v.end(), std::make_pair(b, int32_t{-1})), {b, nxt});
      }
    }
    cur = nxt;
  }
  if (nodes[cur].token < 0) nodes[cur].token = token;  // the first of equal texts wins
}

std::pair<int32_t, size_t> AddedTokens::Trie::longest(std::string_view text, size_t i) const {
  if (nodes.empty()) return {-1, 0};
  int32_t cur = root[static_cast<unsigned char>(text[i])];
  std::pair<int32_t, size_t> best{-1, 0};
  for (size_t k = i + 1; cur > 0; ++k) {
    if (nodes[cur].token >= 0) best = {nodes[cur].token, k - i};
    if (k == text.size()) break;
    const auto b = static_cast<unsigned char>(text[k]);
    const auto& v = nodes[cur].next;
    auto it = std::lower_bound(v.begin(), v.end(), std::make_pair(b, int32_t{-1}));
    cur = it != v.end() && it->first == b ? it->second : -1;
  }
  return best;
}

AddedTokens AddedTokens::from_json(
    const json& list, const std::function<std::string(const std::string&)>& normalize) {
  AddedTokens out;
  if (list.is_null()) return out;
  if (!list.is_array()) bad("added_tokens: not an array");
  for (size_t k = 0; k < list.size(); ++k) {
    const json& a = list[k];
    const std::string where = "added_tokens[" + std::to_string(k) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer())
      bad(where + ".id: missing or not an integer");
    AddedToken t;
    t.content = field_str(a, "content", where);
    t.id = a["id"].get<int32_t>();
    t.special = opt_bool(a, "special");
    t.lstrip = opt_bool(a, "lstrip");
    t.rstrip = opt_bool(a, "rstrip");
    t.single_word = opt_bool(a, "single_word");
    // As Hugging Face: a special token is matched in the raw text unless it says otherwise.
    t.normalized = opt_bool(a, "normalized", !t.special);
    if (t.id < 0) bad(where + ".id: negative");
    if (t.content.empty()) bad(where + ".content: empty");
    out.tokens_.push_back(std::move(t));
  }
  for (size_t k = 0; k < out.tokens_.size(); ++k) {
    const AddedToken& t = out.tokens_[k];
    const std::string text = t.normalized ? normalize(t.content) : t.content;
    if (!text.empty()) out.tries_[t.normalized].add(text, static_cast<int32_t>(k));
  }
  return out;
}

void AddedTokens::split(std::string_view text, bool normalized, std::vector<Part>& out) const {
  const Trie& trie = tries_[normalized];
  size_t start_offset = 0;  // end of the last part written
  for (size_t i = 0; i < text.size();) {
    const auto [tok, len] = trie.longest(text, i);
    if (tok < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = tokens_[tok];
    size_t start = i, stop = i + len;
    i = stop;  // the next match starts after this one, even when this one is dropped
    if (start < start_offset) continue;
    if (t.single_word) {
      const bool word_before = start > 0 && is_word(last_code_point(text, start));
      const bool word_after = stop < text.size() && is_word(first_code_point(text, stop));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        size_t b = s - 1;
        while (b > start_offset && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        if (!is_whitespace(first_code_point(text, b))) break;
        s = b;
      }
      start = s;
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        const auto cps = decode_utf8(text.substr(stop, std::min<size_t>(4, text.size() - stop)));
        if (cps.empty() || !is_whitespace(cps.front().cp)) break;
        stop += cps.front().len;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace tpinfer::tokenizer_detail
