#pragma once
// Text <-> token ids from a Hugging Face tokenizer.json (model type BPE):
//  - byte-level BPE (GPT-2, Llama 3, Qwen2/3): ByteLevel byte map, the GPT-2,
//    Llama 3 and Qwen2 split regexes (hand-coded matchers), ignore_merges, the
//    NFC normalizer (Qwen2: Unicode tables from tools/gen_unicode_nfc.py);
//  - SentencePiece-style BPE (Llama 2, Mistral): metaspace "▁", Prepend/Replace
//    normalizers or the Metaspace pre-tokenizer, <0xNN> byte fallback.
// Added tokens (special or not) are matched in the raw text before
// pre-tokenization (leftmost-longest). An unsupported or malformed file throws
// tpinfer::ModelError with one line naming the field.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer {

class Tokenizer {
 public:
  static Tokenizer from_json(const std::string& tokenizer_json_text);
  static Tokenizer from_file(const std::string& path);  // reads the file, then from_json

  // add_special_tokens_bos: prepend bos_id() when the tokenizer has one.
  // Text that is not valid UTF-8 is encoded as its lossy decoding (U+FFFD for
  // each maximal invalid subsequence, as Python's errors="replace" gives).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens_bos = false) const;
  // Invalid UTF-8 in the decoded bytes becomes U+FFFD. Out-of-range ids throw InputError.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t token_id(std::string_view token) const;  // -1 if absent (vocab or added token)
  size_t vocab_size() const;                       // 1 + the largest id
  int32_t bos_id() const;                          // -1 if none
  bool is_special(int32_t id) const;               // an added token marked "special"

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Turns a stream of ids into text without ever splitting a UTF-8 character:
// bytes of an incomplete character are held until the next push or finish().
// push(id) by push(id) then finish() yields exactly decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false);
  std::string push(int32_t id);  // text completed so far, never a partial UTF-8 char
  std::string finish();          // flushes what is held (an incomplete char becomes U+FFFD)

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  bool at_start_ = true;
  std::string pending_;
};

}  // namespace tpinfer
