#pragma once
// Stop strings: a sequence ends as soon as its generated text contains one of
// its request's stop strings. The text grows token by token through a
// StreamDecoder (so a UTF-8 character is never split), decoded as the result's
// "text" is (special tokens and ids past the tokenizer left out), and each new
// token searches only the tail where a new match can lie: the new text plus the
// longest stop string less one byte before it.
//
// Every TP rank of a group runs the same tokenizer (from the model file) over
// the same tokens, so all stop at the same step without talking.
//
// The tokens keep the token(s) that completed the stop string (as vLLM does):
// "tokens" and "completion_tokens" count them, and "text" is the text before the
// first stop string, so it is then shorter than the decode of "tokens". The
// matcher only says where the text is cut; the result writer decodes it
// (job/result_text), the one place output text is made.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/request.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {

// One sequence's generated text and its search for stop strings.
class StopMatcher {
 public:
  StopMatcher(const Tokenizer& tokenizer, std::vector<std::string> stops);
  // Feeds one generated token. True once the text contains a stop string
  // (and from then on; later tokens are not looked at).
  bool push(int32_t token);
  bool matched() const { return match_ != std::string::npos; }
  // The generated text before the earliest stop string (all of it, and
  // without the bytes of an unfinished character, when none matched).
  std::string text_before_stop() const;
  // Where the earliest stop string starts in the generated text (after matched()).
  size_t stop_at() const { return match_; }

 private:
  const Tokenizer* tokenizer_;
  StreamDecoder decoder_;
  std::vector<std::string> stops_;
  size_t longest_ = 0;  // bytes of the longest stop string
  std::string text_;
  size_t match_ = std::string::npos;  // where the earliest stop string starts
};

// The matchers of one engine's sequences that have stop strings, by sequence id.
class StopStrings {
 public:
  explicit StopStrings(std::shared_ptr<const Tokenizer> tokenizer)
      : tokenizer_(std::move(tokenizer)) {}
  // Empty when the request may run here; else why not (stop strings and no tokenizer).
  std::string refusal(const SamplingParams& params) const;
  // Starts matching for a sequence whose params have stop strings (else nothing).
  void add(int64_t seq_id, const SamplingParams& params);
  // The sequence's next generated token; true when its text now contains a stop string.
  bool push(int64_t seq_id, int32_t token);
  // The sequence finished: when a stop string ended it, sets where the
  // completion's text is cut (Completion::text_bytes). Forgets the sequence
  // either way.
  void finish(int64_t seq_id, Completion& completion);

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unordered_map<int64_t, StopMatcher> matchers_;
};

}  // namespace tpinfer
