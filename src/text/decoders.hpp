#pragma once
// Decoders: token strings back to text (Hugging Face's decoder), run as a
// stream so text can be handed out token by token without ever splitting a
// UTF-8 character, and with exactly the text decoding all ids at once gives.
// One kind of stage per decoder type in decoders.cpp; a Sequence chains them.
// Internal to src/text.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/split_pattern.hpp"
#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct DecodeStage;

class Decoders {
 public:
  // The file's "decoder" (null: tokens joined with spaces, as Hugging Face does).
  static Decoders from_json(const json& node);
  // Runs the stages that look at one token alone over every token string once,
  // so decoding starts from their output.
  void prepare(const std::vector<std::string>& id_to_token);
  // The token as the first stage that decoding runs sees it.
  std::string_view prepared(int32_t id) const { return prepared_[id]; }

  // One decoding: push each token's prepared() text in order, then finish().
  class Stream {
   public:
    explicit Stream(const Decoders& d);
    void push(std::string_view token, std::string& out);
    void finish(std::string& out);  // flushes what stages hold and starts over

   private:
    struct State {
      uint64_t count = 0;  // tokens seen
      std::string buf;     // held text
      bool done = false;
    };
    void feed(size_t stage, std::string tok, std::string& out);
    const Decoders* d_;
    std::vector<State> st_;
  };

 private:
  std::vector<std::shared_ptr<const DecodeStage>> stages_;
  size_t first_ = 0;             // stages before it are folded into prepared_
  bool bytes_prepared_ = false;  // prepared_ holds bytes: stage first_ (ByteLevel) only joins
  std::vector<std::string> prepared_;
};

}  // namespace tpinfer::tokenizer_detail
