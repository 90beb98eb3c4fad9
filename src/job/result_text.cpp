#include "job/result_text.hpp"

#include <vector>

namespace tpinfer {

std::string completion_text(const Tokenizer& tokenizer, const Completion& completion) {
  std::vector<int32_t> known;
  known.reserve(completion.tokens.size());
  for (int32_t id : completion.tokens)
    if (id >= 0 && static_cast<size_t>(id) < tokenizer.vocab_size()) known.push_back(id);
  std::string text = tokenizer.decode(known, /*skip_special_tokens=*/true);
  if (completion.text_bytes >= 0 && static_cast<size_t>(completion.text_bytes) < text.size())
    text.resize(static_cast<size_t>(completion.text_bytes));
  return text;
}

}  // namespace tpinfer
