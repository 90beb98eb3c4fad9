#pragma once
// The one place output text is made: a completion's tokens decoded as the
// result's "text", cut before the stop string that ended it.
#include <string>

#include "base/request.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {

// Special tokens and ids past the tokenizer's vocabulary (checkpoints often pad
// vocab_size past it) have no text. A stop string's cut (text_bytes) is where
// the stop matcher found it in the same decode, token by token.
std::string completion_text(const Tokenizer& tokenizer, const Completion& completion);

}  // namespace tpinfer
