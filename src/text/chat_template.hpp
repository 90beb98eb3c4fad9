#pragma once
// A model's chat template (tokenizer_config.json's "chat_template"), parsed
// once and rendered per conversation in C++, with the output transformers'
// apply_chat_template gives: the same Jinja2 subset and the environment it
// builds (trim_blocks, lstrip_blocks, loopcontrols, its tojson filter,
// raise_exception and strftime_now).
//
// A template using a construct the renderer lacks is refused when it is
// parsed (ChatTemplateError, naming the construct and its line:column); a
// conversation the template rejects (raise_exception, a type error on its
// data) fails alone (ChatTemplateRenderError).
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "text/chat_template_error.hpp"

namespace tpinfer {

namespace jinja {
struct Template;
}

struct ChatTemplateInput {
  nlohmann::json messages = nlohmann::json::array();  // [{"role", "content"}, ...]
  bool add_generation_prompt = false;
  // The tokenizer's special tokens; transformers passes only those it has, so
  // an absent one is undefined in the template.
  std::optional<std::string> bos_token, eos_token;
  // Further variables (e.g. enable_thinking); they override the above.
  nlohmann::json extra = nlohmann::json::object();
};

class ChatTemplate {
 public:
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // As apply_chat_template(messages, tokenize=False, ...) renders it: tools
  // and documents are None unless `extra` gives them.
  std::string render(const ChatTemplateInput& in) const;
  // Renders with exactly these variables (a JSON object).
  std::string render_vars(const nlohmann::json& vars) const;

 private:
  std::unique_ptr<jinja::Template> tpl_;
};

}  // namespace tpinfer
