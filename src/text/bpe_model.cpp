// BPE: a piece's characters (or bytes) as symbols, merged lowest rank first.
#include "text/bpe_model.hpp"

#include <queue>

#include "text/byte_level.hpp"
#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {

BpeModel BpeModel::from_json(const json& model, bool byte_level_input) {
  BpeModel m;
  m.byte_level_input_ = byte_level_input;
  if (!model.contains("vocab") || !model["vocab"].is_object())
    bad("model.vocab: missing or not an object");
  m.ignore_merges_ = opt_bool(model, "ignore_merges");
  m.fuse_unk_ = opt_bool(model, "fuse_unk");
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0))
    bad("model.dropout: BPE dropout is not supported (only null)");
  m.prefix_ = opt_str(model, "continuing_subword_prefix");
  m.suffix_ = opt_str(model, "end_of_word_suffix");

  m.vocab_.reserve(model["vocab"].size());
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1 << 30))
      bad("model.vocab[\"" + it.key() + "\"]: not a valid id");
    const int32_t id = it.value().get<int32_t>();
    m.vocab_[it.key()] = id;
    m.max_id_ = std::max(m.max_id_, id);
  }

  const std::string unk = opt_str(model, "unk_token");
  if (!unk.empty()) {
    auto it = m.vocab_.find(unk);
    if (it == m.vocab_.end()) bad("model.unk_token \"" + unk + "\" is not in the vocab");
    m.unk_id_ = it->second;
  }
  m.byte_fallback_ids_.fill(-1);
  m.byte_fallback_ = opt_bool(model, "byte_fallback");
  if (m.byte_fallback_)
    for (int b = 0; b < 256; ++b) {
      static const char* const kHex = "0123456789ABCDEF";
      const std::string name = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
      if (auto it = m.vocab_.find(name); it != m.vocab_.end()) m.byte_fallback_ids_[b] = it->second;
    }
  m.byte_ids_.fill(-1);
  if (byte_level_input) {
    const auto& b2u = byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, b2u[b]);
      if (auto it = m.vocab_.find(s); it != m.vocab_.end()) m.byte_ids_[b] = it->second;
    }
    if (m.ignore_merges_) {
      m.byte_vocab_.reserve(m.vocab_.size());
      for (const auto& [tok, id] : m.vocab_) {
        std::string bytes;
        bool ok = true;
        for (const CodePoint& cp : decode_utf8(tok)) {
          const int b = unicode_to_byte(cp.cp);
          if (b < 0) {
            ok = false;  // not made of byte symbols: no byte string reads as it
            break;
          }
          bytes += static_cast<char>(b);
        }
        if (ok) m.byte_vocab_.emplace(std::move(bytes), id);
      }
    }
  }

  if (!model.contains("merges") || !model["merges"].is_array())
    bad("model.merges: missing or not an array");
  m.merges_.reserve(model["merges"].size());
  int32_t rank = 0;
  for (const json& mg : model["merges"]) {
    const std::string where = "model.merges[" + std::to_string(rank) + "]";
    std::string a, b;
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ');
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
    auto ia = m.vocab_.find(a), ib = m.vocab_.find(b);
    if (ia == m.vocab_.end() || ib == m.vocab_.end())
      bad(where + ": \"" + (ia == m.vocab_.end() ? a : b) + "\" is not in the vocab");
    // The merged token drops b's continuing_subword_prefix.
    const size_t cut = std::min(m.prefix_.size(), b.size());
    const std::string merged = a + b.substr(cut);
    auto inew = m.vocab_.find(merged);
    if (inew == m.vocab_.end())
      bad(where + ": the merged token \"" + merged + "\" is not in the vocab");
    m.merges_.emplace(key(ia->second, ib->second), std::make_pair(rank, inew->second));
    ++rank;
  }
  return m;
}

// One symbol per character (per byte for byte-level input); a character
// missing from the vocab becomes its <0xNN> bytes (byte_fallback), else
// unk_token (consecutive ones fused with fuse_unk), else nothing, as in
// Hugging Face's BPE.
void BpeModel::initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const {
  if (byte_level_input_ && prefix_.empty() && suffix_.empty()) {
    bool last_unk = false;
    for (unsigned char b : piece) {
      if (byte_ids_[b] >= 0) {
        syms.push_back(byte_ids_[b]);
        last_unk = false;
      } else if (unk_id_ >= 0) {
        if (!(fuse_unk_ && last_unk)) syms.push_back(unk_id_);
        last_unk = true;
      }
    }
    return;
  }
  const auto& b2u = byte_to_unicode();
  std::vector<CodePoint> chars;
  if (byte_level_input_)
    for (size_t i = 0; i < piece.size(); ++i)
      chars.push_back({b2u[static_cast<unsigned char>(piece[i])], static_cast<uint32_t>(i), 1});
  else
    chars = decode_utf8(piece);
  std::string s;
  bool last_unk = false;
  for (size_t i = 0; i < chars.size(); ++i) {
    s.clear();
    if (i > 0) s += prefix_;
    if (byte_level_input_)
      append_utf8(s, chars[i].cp);
    else
      s.append(piece.substr(chars[i].offset, chars[i].len));
    if (i + 1 == chars.size()) s += suffix_;
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      syms.push_back(it->second);
      last_unk = false;
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (unsigned char b : s) all_bytes = all_bytes && byte_fallback_ids_[b] >= 0;
    if (all_bytes) {
      for (unsigned char b : s) syms.push_back(byte_fallback_ids_[b]);
      last_unk = false;
      continue;
    }
    if (unk_id_ >= 0) {
      if (!(fuse_unk_ && last_unk)) syms.push_back(unk_id_);
      last_unk = true;
    }
  }
}

// Merges symbols lowest rank first (leftmost on ties), like tokenizers' Word::merge_all.
void BpeModel::merge(std::vector<int32_t>& syms, std::vector<int32_t>& out) const {
  const int n = static_cast<int>(syms.size());
  if (n == 0) return;
  if (n == 1) {
    out.push_back(syms[0]);
    return;
  }
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
    auto it = merges_.find(key(syms[i], syms[next[i]]));
    if (it != merges_.end()) q.push({it->second.first, i, it->second.second});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    Cand c = q.top();
    q.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    auto it = merges_.find(key(syms[c.pos], syms[next[c.pos]]));
    if (it == merges_.end() || it->second.second != c.new_id) continue;
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

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    const Vocab& v = byte_level_input_ ? byte_vocab_ : vocab_;
    if (auto it = v.find(piece); it != v.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kCacheMaxPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (auto it = cache_->ids.find(piece); it != cache_->ids.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(piece.size());
  initial_symbols(piece, syms);
  const size_t first = out.size();
  merge(syms, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->ids.size() < kCacheEntries)
      cache_->ids.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

}  // namespace tpinfer::tokenizer_detail
