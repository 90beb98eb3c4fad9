// The tokenizer pipeline: added tokens, normalizer, pre-tokenizer, BPE model,
// post-processor; and decoding through the decoder. The components live in
// their own files (see tokenizer.hpp).
#include "text/tokenizer.hpp"

#include <fstream>
#include <sstream>

#include "base/error.hpp"
#include "text/added_tokens.hpp"
#include "text/bpe_model.hpp"
#include "text/decoders.hpp"
#include "text/normalizers.hpp"
#include "text/post_processor.hpp"
#include "text/pre_tokenizers.hpp"
#include "text/tokenizer_json.hpp"
#include "text/tokenizer_unicode.hpp"

namespace tpinfer {

using namespace tokenizer_detail;

struct Tokenizer::Impl {
  Normalizers normalizers;
  PreTokenizers pre_tokenizers;
  BpeModel model;
  AddedTokens added;
  PostProcessor post;
  Decoders decoders;

  Vocab token_ids;  // model vocab and added tokens
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> id_special;  // an added token marked special
  int32_t bos = -1;

  // Normalizes, pre-tokenizes and encodes text between raw-matched added tokens.
  void encode_segment(std::string_view seg, bool at_origin, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::encode_segment(std::string_view seg, bool at_origin,
                                     std::vector<int32_t>& out) const {
  std::string normalized;
  if (!normalizers.empty()) {
    normalized = normalizers.run(seg);
    seg = normalized;
  }
  std::vector<AddedTokens::Part> parts;
  if (added.has(true))
    added.split(seg, true, parts);
  else
    parts.push_back({0, seg.size(), -1});
  PreTokenArena arena;
  std::vector<PreToken> pieces, scratch;
  for (const AddedTokens::Part& part : parts) {
    if (part.id >= 0) {
      out.push_back(part.id);
      continue;
    }
    pieces.assign(1, {seg.substr(part.begin, part.end - part.begin), at_origin && part.begin == 0});
    pre_tokenizers.run(pieces, scratch, arena);
    for (const PreToken& p : pieces) model.encode(p.text, out);
  }
}

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
  auto member = [&](const char* key) -> const json& {
    static const json null_json;
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };

  if (!j.contains("model")) bad("model: missing");
  const json& model = j["model"];
  const std::string mtype =
      model.is_object() && !model.contains("type") ? "BPE" : type_of(model, "model");
  if (mtype != "BPE") bad("model.type \"" + mtype + "\" is not supported (only BPE)");

  m.normalizers = Normalizers::from_json(member("normalizer"));
  m.pre_tokenizers = PreTokenizers::from_json(member("pre_tokenizer"));
  m.model = BpeModel::from_json(model, m.pre_tokenizers.byte_level());
  m.added = AddedTokens::from_json(member("added_tokens"),
                                   [&](const std::string& s) { return m.normalizers.run(s); });
  m.decoders = Decoders::from_json(member("decoder"));

  int32_t max_id = m.model.max_id();
  for (const AddedToken& a : m.added.tokens()) max_id = std::max(max_id, a.id);
  if (max_id < 0) bad("model.vocab: empty");
  m.id_to_token.assign(max_id + 1, std::string());
  m.id_special.assign(max_id + 1, 0);
  m.token_ids = m.model.vocab();
  for (const auto& [tok, id] : m.model.vocab()) m.id_to_token[id] = tok;
  for (const AddedToken& a : m.added.tokens()) {
    m.id_to_token[a.id] = a.content;
    m.id_special[a.id] = a.special;
    m.token_ids[a.content] = a.id;
  }
  m.decoders.prepare(m.id_to_token);

  auto token_id = [&](const std::string& s) {
    auto it = m.token_ids.find(s);
    return it == m.token_ids.end() ? int32_t{-1} : it->second;
  };
  m.post = PostProcessor::from_json(member("post_processor"), token_id);
  for (int32_t id : m.post.prefix)
    if (id < 0 || id > max_id)
      bad("post_processor: special token id " + std::to_string(id) + " is not a token");
  for (int32_t id : m.post.suffix)
    if (id < 0 || id > max_id)
      bad("post_processor: special token id " + std::to_string(id) + " is not a token");
  if (!m.post.prefix.empty()) m.bos = m.post.prefix[0];
  // The npm copy of Llama 3's file has only a ByteLevel post-processor where
  // the hub's has the template that starts prompts with <|begin_of_text|>.
  if (m.bos < 0 && member("post_processor").is_object() && token_id("<|begin_of_text|>") >= 0) {
    m.bos = token_id("<|begin_of_text|>");
    m.post.prefix.insert(m.post.prefix.begin(), m.bos);
  }

  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
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
  if (add_special) out = m.post.prefix;
  std::vector<AddedTokens::Part> parts;
  m.added.split(text, false, parts);
  for (const AddedTokens::Part& p : parts) {
    if (p.id >= 0)
      out.push_back(p.id);
    else
      m.encode_segment(text.substr(p.begin, p.end - p.begin), p.begin == 0, out);
  }
  if (add_special) out.insert(out.end(), m.post.suffix.begin(), m.post.suffix.end());
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
  auto it = impl_->token_ids.find(token);
  return it == impl_->token_ids.end() ? -1 : it->second;
}
size_t Tokenizer::vocab_size() const {
  return impl_->id_to_token.size();
}
int32_t Tokenizer::bos_id() const {
  return impl_->bos;
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[id];
}

struct StreamDecoder::State {
  Decoders::Stream stream;
};

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok),
      skip_special_(skip_special_tokens),
      state_(std::make_unique<State>(State{Decoders::Stream(tok.impl().decoders)})) {}
StreamDecoder::StreamDecoder(const StreamDecoder& o)
    : tok_(o.tok_), skip_special_(o.skip_special_), state_(std::make_unique<State>(*o.state_)) {}
StreamDecoder& StreamDecoder::operator=(const StreamDecoder& o) {
  if (this != &o) {
    tok_ = o.tok_;
    skip_special_ = o.skip_special_;
    state_ = std::make_unique<State>(*o.state_);
  }
  return *this;
}
StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
StreamDecoder& StreamDecoder::operator=(StreamDecoder&&) noexcept = default;
StreamDecoder::~StreamDecoder() = default;

std::string StreamDecoder::push(int32_t id) {
  const Tokenizer::Impl& m = tok_->impl();
  if (id < 0 || static_cast<size_t>(id) >= m.id_to_token.size())
    throw InputError("token id " + std::to_string(id) + " is out of range (vocab size " +
                     std::to_string(m.id_to_token.size()) + ")");
  if (skip_special_ && m.id_special[id]) return {};
  std::string out;
  state_->stream.push(m.decoders.prepared(id), out);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out;
  state_->stream.finish(out);
  return out;
}

}  // namespace tpinfer
