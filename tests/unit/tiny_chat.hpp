#pragma once
// The tiny Llama 3-style tokenizer the chat and OpenAI tests render with.
#include <filesystem>
#include <memory>

#include "text/tokenizer.hpp"

namespace tpinfer::test {

// Llama 3-like, with the tiny tokenizer's special tokens.
inline constexpr const char* kTinyLlama3Template =
    "{{- bos_token }}{% for m in messages %}[{{ m.role }}]\n{{ m.content | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}[assistant]\n{% endif %}";

inline std::shared_ptr<const Tokenizer> tiny_llama3_tokenizer() {
  static const auto tok = std::make_shared<const Tokenizer>(
      Tokenizer::from_file(std::filesystem::path(__FILE__).parent_path().parent_path() / "data" /
                           "tokenizer" / "tiny_llama3.tokenizer.json"));
  return tok;
}

}  // namespace tpinfer::test
