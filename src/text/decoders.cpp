// The decoders of Hugging Face's tokenizer.json as stages of a stream.
//
// Hugging Face runs each decoder over the list of token strings in turn. Up to
// the first Fuse or ByteLevel (which join the list into one string) a stage
// sees tokens; after it, a stage sees the one joined string, here arriving in
// chunks, and holds back what a later chunk could still change.
#include "text/decoders.hpp"

#include "text/byte_level.hpp"
#include "text/tokenizer_unicode.hpp"

namespace tpinfer::tokenizer_detail {

struct DecodeStage {
  enum class Kind { kReplace, kStrip, kMetaspace, kByteFallback, kFuse, kByteLevel, kJoinSpaces };
  Kind kind;
  bool fused = false;  // after a Fuse or ByteLevel: sees chunks of one string
  // Replace
  std::unique_ptr<SplitPattern> pattern;
  std::string literal;  // the pattern when it is a String (the only kind allowed when fused)
  std::string content;
  // Strip
  uint32_t strip_cp = 0;
  size_t start = 0, stop = 0;
  // Metaspace
  uint32_t replacement = 0;
  bool prepend_never = false;
};

namespace {

using Kind = DecodeStage::Kind;

std::string replace_all(const DecodeStage& s, std::string_view tok) {
  std::vector<Span> m;
  s.pattern->find(tok, m);
  if (m.empty()) return std::string(tok);
  std::string out;
  size_t prev = 0;
  for (const Span& x : m) {
    out.append(tok.substr(prev, x.begin - prev));
    out += s.content;
    prev = x.end;
  }
  out.append(tok.substr(prev));
  return out;
}

// Removes up to `start` leading and `stop` trailing strip_cp characters.
std::string strip_token(const DecodeStage& s, std::string_view tok) {
  const std::vector<CodePoint> cps = decode_utf8(tok);
  size_t a = 0, b = cps.size();
  while (a < s.start && a < cps.size() && cps[a].cp == s.strip_cp) ++a;
  for (size_t k = 0; k < s.stop && b > a && cps[b - 1].cp == s.strip_cp; ++k) --b;
  if (a >= b) return {};
  const size_t from = cps[a].offset, to = b < cps.size() ? cps[b].offset : tok.size();
  return std::string(tok.substr(from, to - from));
}

// The replacement becomes a space, or nothing in the first token.
std::string metaspace_token(const DecodeStage& s, std::string_view tok, bool first) {
  std::string out;
  out.reserve(tok.size());
  for (const CodePoint& c : decode_utf8(tok)) {
    if (c.cp == s.replacement) {
      if (!(first && !s.prepend_never)) out += ' ';
    } else {
      out.append(tok.substr(c.offset, c.len));
    }
  }
  return out;
}

// A token's bytes: each character's byte in GPT-2's alphabet, or, when any
// character is outside it, the token's own UTF-8 (as Hugging Face does).
std::string byte_level_bytes(std::string_view tok) {
  std::string out;
  out.reserve(tok.size());
  for (const CodePoint& c : decode_utf8(tok)) {
    const int b = unicode_to_byte(c.cp);
    if (b < 0) return std::string(tok);
    out += static_cast<char>(b);
  }
  return out;
}

int byte_fallback_value(std::string_view tok) {  // "<0xNN>" -> NN, else -1
  if (tok.size() != 6 || tok.substr(0, 3) != "<0x" || tok[5] != '>') return -1;
  auto hex = [](char ch) {
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                    : -1;
  };
  const int h = hex(tok[3]), l = hex(tok[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

uint32_t single_code_point(const std::string& s, const std::string& where) {
  const auto cps = decode_utf8(s);
  if (cps.size() != 1) bad(where + ": must be one character");
  return cps[0].cp;
}

std::shared_ptr<const DecodeStage> parse_one(const json& d, const std::string& where, bool fused) {
  const std::string t = type_of(d, where);
  auto s = std::make_shared<DecodeStage>();
  s->fused = fused;
  if (t == "Replace") {
    s->kind = Kind::kReplace;
    if (!d.contains("pattern")) bad(where + ".Replace.pattern: missing");
    s->pattern = SplitPattern::from_json(d["pattern"], where + ".Replace.pattern");
    if (d["pattern"].contains("String")) s->literal = d["pattern"]["String"].get<std::string>();
    if (fused && s->literal.empty())
      bad(where + ": a Replace with a Regex pattern after Fuse/ByteLevel is not supported");
    s->content = field_str(d, "content", where + ".Replace");
  } else if (t == "Strip") {
    s->kind = Kind::kStrip;
    s->strip_cp = single_code_point(field_str(d, "content", where + ".Strip"), where + ".content");
    s->start = d.value("start", 0);
    s->stop = d.value("stop", 0);
  } else if (t == "Metaspace") {
    s->kind = Kind::kMetaspace;
    s->replacement = single_code_point(field_str(d, "replacement", where + ".Metaspace"),
                                       where + ".replacement");
    std::string scheme = opt_str(d, "prepend_scheme");
    if (scheme.empty())
      scheme =
          d.contains("add_prefix_space") && !opt_bool(d, "add_prefix_space") ? "never" : "always";
    if (scheme != "always" && scheme != "first" && scheme != "never")
      bad(where + ".Metaspace.prepend_scheme \"" + scheme + "\" is not supported");
    s->prepend_never = scheme == "never";
  } else if (t == "ByteFallback") {
    s->kind = Kind::kByteFallback;
    if (fused) bad(where + ": ByteFallback after Fuse/ByteLevel is not supported");
  } else if (t == "Fuse") {
    s->kind = Kind::kFuse;
  } else if (t == "ByteLevel") {
    s->kind = Kind::kByteLevel;
    if (fused) bad(where + ": ByteLevel after Fuse/ByteLevel is not supported");
  } else {
    bad(where + ".type \"" + t +
        "\" is not supported (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)");
  }
  return s;
}

}  // namespace

Decoders Decoders::from_json(const json& node) {
  Decoders out;
  bool fused = false;
  for_each_component(node, "decoder", "decoders", [&](const json& d, const std::string& where) {
    out.stages_.push_back(parse_one(d, where, fused));
    fused = fused || out.stages_.back()->kind == Kind::kFuse ||
            out.stages_.back()->kind == Kind::kByteLevel;
  });
  if (out.stages_.empty()) {
    auto join = std::make_shared<DecodeStage>();
    join->kind = Kind::kJoinSpaces;
    out.stages_.push_back(join);
  }
  return out;
}

void Decoders::prepare(const std::vector<std::string>& id_to_token) {
  // Leading stages that map each token on its own (Replace, Strip), and the
  // character-to-byte half of a ByteLevel after them.
  first_ = 0;
  while (first_ < stages_.size() &&
         (stages_[first_]->kind == Kind::kReplace || stages_[first_]->kind == Kind::kStrip))
    ++first_;
  const bool bytes = first_ < stages_.size() && stages_[first_]->kind == Kind::kByteLevel;
  prepared_.resize(id_to_token.size());
  for (size_t id = 0; id < id_to_token.size(); ++id) {
    std::string t = id_to_token[id];
    for (size_t k = 0; k < first_; ++k)
      t = stages_[k]->kind == Kind::kReplace ? replace_all(*stages_[k], t)
                                             : strip_token(*stages_[k], t);
    prepared_[id] = bytes ? byte_level_bytes(t) : std::move(t);
  }
  bytes_prepared_ = bytes;
}

Decoders::Stream::Stream(const Decoders& d) : d_(&d), st_(d.stages_.size()) {}

void Decoders::Stream::push(std::string_view token, std::string& out) {
  feed(d_->first_, std::string(token), out);
}

void Decoders::Stream::feed(size_t k, std::string tok, std::string& out) {
  if (k == d_->stages_.size()) {
    out += tok;
    return;
  }
  const DecodeStage& s = *d_->stages_[k];
  State& st = st_[k];
  switch (s.kind) {
    case Kind::kReplace: {
      if (!s.fused) return feed(k + 1, replace_all(s, tok), out);
      // A match may straddle chunks: hold back a tail that could start one.
      st.buf += tok;
      std::string done;
      size_t pos = 0;
      for (size_t f = st.buf.find(s.literal); f != std::string::npos;
           f = st.buf.find(s.literal, pos)) {
        done.append(st.buf, pos, f - pos);
        done += s.content;
        pos = f + s.literal.size();
      }
      size_t hold = std::min(s.literal.size() - 1, st.buf.size() - pos);
      while (hold > 0 && st.buf.compare(st.buf.size() - hold, hold, s.literal, 0, hold) != 0)
        --hold;
      done.append(st.buf, pos, st.buf.size() - pos - hold);
      st.buf.erase(0, st.buf.size() - hold);
      if (!done.empty()) feed(k + 1, std::move(done), out);
      return;
    }
    case Kind::kStrip: {
      if (!s.fused) return feed(k + 1, strip_token(s, tok), out);
      // Leading characters at the start of the string, trailing ones held
      // until finish() shows they end it.
      std::string_view t = tok;
      while (!st.done && st.count < s.start && !t.empty()) {
        const CodePoint c = decode_utf8(t.substr(0, std::min<size_t>(4, t.size())))[0];
        if (c.cp != s.strip_cp) break;
        t.remove_prefix(c.len);
        ++st.count;
      }
      if (!t.empty()) st.done = true;
      std::string all = st.buf + std::string(t);
      st.buf.clear();
      if (s.stop > 0) {
        const std::vector<CodePoint> cps = decode_utf8(all);
        size_t b = cps.size();
        while (b > 0 && cps.size() - b < s.stop && cps[b - 1].cp == s.strip_cp) --b;
        if (b < cps.size()) {
          st.buf = all.substr(cps[b].offset);
          all.resize(cps[b].offset);
        }
      }
      if (!all.empty()) feed(k + 1, std::move(all), out);
      return;
    }
    case Kind::kMetaspace: {
      const bool first = s.fused || st.count == 0;
      ++st.count;
      return feed(k + 1, metaspace_token(s, tok, first), out);
    }
    case Kind::kByteFallback: {
      const int b = byte_fallback_value(tok);
      if (b >= 0) {
        st.buf += static_cast<char>(b);
        return;
      }
      if (!st.buf.empty()) {
        std::string group;
        group.swap(st.buf);
        // A run of byte tokens that is not UTF-8 gives one U+FFFD per byte.
        if (is_valid_utf8(group)) {
          feed(k + 1, std::move(group), out);
        } else {
          for (size_t i = 0; i < group.size(); ++i) feed(k + 1, "\xEF\xBF\xBD", out);
        }
      }
      return feed(k + 1, std::move(tok), out);
    }
    case Kind::kFuse:
      return feed(k + 1, std::move(tok), out);
    case Kind::kByteLevel: {
      if (k == d_->first_ && d_->bytes_prepared_)
        st.buf += tok;
      else
        st.buf += byte_level_bytes(tok);
      std::string chunk = take_complete_utf8(st.buf, false);
      if (!chunk.empty()) feed(k + 1, std::move(chunk), out);
      return;
    }
    case Kind::kJoinSpaces:
      if (st.count++ > 0) tok.insert(0, " ");
      return feed(k + 1, std::move(tok), out);
  }
}

void Decoders::Stream::finish(std::string& out) {
  for (size_t k = d_->first_; k < d_->stages_.size(); ++k) {
    const DecodeStage& s = *d_->stages_[k];
    State& st = st_[k];
    std::string held;
    held.swap(st.buf);
    st = State{};
    if (held.empty()) continue;
    switch (s.kind) {
      case Kind::kReplace:
        feed(k + 1, std::move(held), out);
        break;
      case Kind::kByteFallback:
        if (is_valid_utf8(held))
          feed(k + 1, std::move(held), out);
        else
          for (size_t i = 0; i < held.size(); ++i) feed(k + 1, "\xEF\xBF\xBD", out);
        break;
      case Kind::kByteLevel:
        feed(k + 1, take_complete_utf8(held, true), out);
        break;
      default:  // Strip: what it held ends the string, so it is stripped
        break;
    }
  }
}

}  // namespace tpinfer::tokenizer_detail
