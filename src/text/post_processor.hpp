#pragma once
// The post-processor: the special tokens an encoding gets around the text
// when special tokens are asked for (TemplateProcessing's "single" template,
// RobertaProcessing's and BertProcessing's cls/sep; ByteLevel only moves
// offsets, so it adds nothing; a Sequence runs each in turn).
// Internal to src/text.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

struct PostProcessor {
  std::vector<int32_t> prefix, suffix;  // ids before and after the text

  // The file's "post_processor" (null: none). `token_id` finds a special
  // token by its text when the template gives no ids (-1: absent).
  static PostProcessor from_json(const json& node,
                                 const std::function<int32_t(const std::string&)>& token_id);
};

}  // namespace tpinfer::tokenizer_detail
