#pragma once
// Conversations to prompt tokens, on rank 0 as the request reader reads them:
// the messages are checked, rendered by the job's chat template with
// add_generation_prompt, and tokenized as transformers tokenizes after
// apply_chat_template (special tokens in the text parsed, no BOS added: the
// template writes its own).
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

class ChatPrompt {
 public:
  // Parses the template once; ChatTemplateError when the renderer cannot run it.
  ChatPrompt(const std::string& source, std::optional<std::string> bos_token,
             std::optional<std::string> eos_token, std::shared_ptr<const Tokenizer> tokenizer);

  // `messages` as the template gets them: an array of {"role": string,
  // "content": string or [{"type": "text", "text": string}, ...], "name"?}.
  // A template that iterates content itself (Gemma 3's) gets the parts as a
  // list, as transformers gives them; any other gets them joined with "\n"
  // (as vLLM does for templates that take a string). Anything else throws LineError naming the
  // field
  // ("messages[1].content[0].type"); a field that would change the prompt
  // (tool_calls, an image part) is never dropped silently.
  static nlohmann::json checked_messages(const nlohmann::json& messages, const std::string& name);
  // Renders checked messages; ChatTemplateRenderError when the template
  // rejects them (its raise_exception).
  std::string render(const nlohmann::json& checked) const;
  std::vector<int32_t> encode(const nlohmann::json& checked) const;

 private:
  ChatTemplate template_;
  std::optional<std::string> bos_token_, eos_token_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  bool parts_as_list_ = false;  // the template iterates content parts itself
};

// A --chat-template file's text (UsageError naming it when unreadable).
std::string read_chat_template_file(const std::string& path);

// Where a job's template comes from and what its special tokens are.
struct ChatPromptSource {
  std::string override_path;                 // --chat-template FILE; empty: the model's
  std::optional<StoredChatTemplate> stored;  // the model file's
  std::string model_path;                    // for messages
  std::vector<int64_t> eos_token_ids;        // the model's, for eos_token without a stored one
};
// The job's chat prompt: the --chat-template file when given (UsageError when
// it cannot be read), else the model's template; nullptr when there is neither
// or no tokenizer (then `why_none` says so, for the error line of a request
// with messages). The special tokens are the stored ones, else the tokenizer's
// BOS and the model's first EOS id. A template the renderer cannot run is a
// ModelError naming its source, the construct and its position.
std::shared_ptr<const ChatPrompt> make_chat_prompt(const ChatPromptSource& source,
                                                   std::shared_ptr<const Tokenizer> tokenizer,
                                                   std::string* why_none);

}  // namespace tpinfer
