#pragma once
// Added tokens ("added_tokens"): found in the text before the model runs,
// leftmost-longest, with their lstrip, rstrip, single_word and normalized
// options as Hugging Face applies them. Internal to src/text.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = false, single_word = false;
};

class AddedTokens {
 public:
  // The file's "added_tokens" (null: none). `normalize` gives the text a
  // normalized token is matched as (its content through the normalizer).
  static AddedTokens from_json(const json& list,
                               const std::function<std::string(const std::string&)>& normalize);

  const std::vector<AddedToken>& tokens() const { return tokens_; }

  struct Part {
    size_t begin, end;  // byte range in the text
    int32_t id;         // the added token, or -1 for text between tokens
  };
  // Cuts `text` at the tokens matched before normalization (normalized=false)
  // or after it (normalized=true); appends the parts in order.
  void split(std::string_view text, bool normalized, std::vector<Part>& out) const;
  bool has(bool normalized) const { return !tries_[normalized].nodes.empty(); }

 private:
  // A byte trie of the token texts.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
      int32_t token = -1;                                   // index in tokens_
    };
    std::array<int32_t, 256> root{};
    std::vector<Node> nodes;
    void add(std::string_view s, int32_t token);
    // Longest token starting at text[i] (index in tokens_, its length), or -1.
    std::pair<int32_t, size_t> longest(std::string_view text, size_t i) const;
  };
  std::vector<AddedToken> tokens_;
  std::array<Trie, 2> tries_;  // [0] matched in the raw text, [1] in normalized text
};

}  // namespace tpinfer::tokenizer_detail
