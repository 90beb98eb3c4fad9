#pragma once
// The tiny Llama 3-style tokenizer the chat and OpenAI tests render with.
#include <filesystem>
#include <memory>

#include "text/tokenizer.hpp"

namespace tpinfer::test {

inline std::shared_ptr<const Tokenizer> tiny_llama3_tokenizer() {
  static const auto tok = std::make_shared<const Tokenizer>(
      Tokenizer::from_file(std::filesystem::path(__FILE__).parent_path().parent_path() / "data" /
                           "tokenizer" / "tiny_llama3.tokenizer.json"));
  return tok;
}

}  // namespace tpinfer::test
