#pragma once
// The BPE model of tokenizer.json: vocab, ranked merges, and the options
// ignore_merges, byte_fallback, unk_token/fuse_unk, continuing_subword_prefix,
// end_of_word_suffix. Internal to src/text.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // byte_level_input: the pieces come from a ByteLevel pre-tokenizer, so each
  // byte stands for its symbol in GPT-2's byte alphabet.
  static BpeModel from_json(const json& model, bool byte_level_input);

  // Appends the ids of one pre-tokenized piece.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t max_id() const { return max_id_; }

 private:
  void merge(std::vector<int32_t>& syms, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const;
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  Vocab vocab_;       // token string -> id
  Vocab byte_vocab_;  // byte-level input: the bytes each token stands for -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged)
  std::array<int32_t, 256> byte_ids_{};           // byte-level input: each byte's symbol, -1 none
  std::array<int32_t, 256> byte_fallback_ids_{};  // <0xNN>, -1 none (or byte_fallback off)
  int32_t max_id_ = -1;
  int32_t unk_id_ = -1;
  bool byte_level_input_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix

  // Pieces recur (words), and merging is most of the work: the ids of short
  // pieces are kept, up to a bound, as Hugging Face's BPE cache does.
  struct Cache {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> ids;
  };
  static constexpr size_t kCacheEntries = 1 << 16;
  static constexpr size_t kCacheMaxPiece = 64;
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

}  // namespace tpinfer::tokenizer_detail
