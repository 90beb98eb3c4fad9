#pragma once
// Pre-tokenizers: cut normalized text into the pieces the model encodes one by
// one (Hugging Face's pre_tokenizer). One struct per algorithm in
// pre_tokenizers.cpp; a Sequence runs them in order. Internal to src/text.
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct PreToken {
  std::string_view text;
  bool at_origin;  // starts at offset 0 of the whole input (Metaspace's "first")
};

// Text a pre-tokenizer rewrites lives here while the pieces point into it
// (a deque never moves what it holds).
using PreTokenArena = std::deque<std::string>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Appends the pieces of `in` to `out`.
  virtual void apply(const std::vector<PreToken>& in, std::vector<PreToken>& out,
                     PreTokenArena& arena) const = 0;
};

class PreTokenizers {
 public:
  // The file's "pre_tokenizer" (null: none). A ByteLevel step must be the last.
  static PreTokenizers from_json(const json& node);
  // Splits `pieces` in place through every step.
  void run(std::vector<PreToken>& pieces, std::vector<PreToken>& scratch,
           PreTokenArena& arena) const;
  // The last step is ByteLevel: the model reads each piece as bytes mapped to
  // GPT-2's byte alphabet.
  bool byte_level() const { return byte_level_; }
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<std::shared_ptr<const PreTokenizer>> steps_;
  bool byte_level_ = false;
};

}  // namespace tpinfer::tokenizer_detail
