#include "text/chat_template.hpp"

#include "text/jinja_ast.hpp"
#include "text/jinja_eval.hpp"

namespace tpinfer {

ChatTemplate::ChatTemplate(const std::string& source)
    : tpl_(std::make_unique<jinja::Template>(jinja::parse_template(source))) {}
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const ChatTemplateInput& in) const {
  nlohmann::json vars = nlohmann::json::object();
  vars["messages"] = in.messages;
  vars["tools"] = nullptr;
  vars["documents"] = nullptr;
  vars["add_generation_prompt"] = in.add_generation_prompt;
  if (in.bos_token) vars["bos_token"] = *in.bos_token;
  if (in.eos_token) vars["eos_token"] = *in.eos_token;
  for (auto it = in.extra.begin(); it != in.extra.end(); ++it) vars[it.key()] = *it;
  return render_vars(vars);
}

std::string ChatTemplate::render_vars(const nlohmann::json& vars) const {
  if (!vars.is_object())
    throw ChatTemplateRenderError("chat template variables must be a JSON object");
  jinja::Value v = jinja::Value::from_json(vars);
  jinja::Renderer r(*tpl_, std::move(*v.dict));
  return r.render();
}

}  // namespace tpinfer
