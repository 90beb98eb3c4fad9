#pragma once
// Text <-> token ids from a Hugging Face tokenizer.json with a BPE model, run
// as Hugging Face's tokenizers runs it: added tokens are cut out of the text
// first, the rest goes through the normalizer (normalizers.hpp), the
// pre-tokenizer (pre_tokenizers.hpp) and the model (bpe_model.hpp); the
// post-processor (post_processor.hpp) adds the special tokens a prompt gets;
// decoding runs the decoder (decoders.hpp). A component or option tpinfer
// lacks is refused at load: tpinfer::ModelError, one line naming the field.
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

  // add_special_tokens_bos: add the post-processor's special tokens (a BOS
  // before the text, and whatever else its template puts around it).
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
  StreamDecoder(const StreamDecoder& o);
  StreamDecoder& operator=(const StreamDecoder& o);
  StreamDecoder(StreamDecoder&&) noexcept;
  StreamDecoder& operator=(StreamDecoder&&) noexcept;
  ~StreamDecoder();
  std::string push(int32_t id);  // text completed so far, never a partial UTF-8 char
  std::string finish();          // flushes what is held (an incomplete char becomes U+FFFD)

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  struct State;  // what the decoder holds between pushes
  std::unique_ptr<State> state_;
};

}  // namespace tpinfer
