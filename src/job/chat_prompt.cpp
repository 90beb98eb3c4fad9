#include "job/chat_prompt.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "base/error.hpp"
#include "job/line_checks.hpp"

namespace tpinfer {

using json = nlohmann::json;

namespace {
bool iterates_content(const std::string& source);
}  // namespace

ChatPrompt::ChatPrompt(const std::string& source, std::optional<std::string> bos_token,
                       std::optional<std::string> eos_token,
                       std::shared_ptr<const Tokenizer> tokenizer)
    : template_(source),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)),
      tokenizer_(std::move(tokenizer)) {
  TPINFER_ASSERT(tokenizer_ != nullptr, "ChatPrompt without a tokenizer");
  parts_as_list_ = iterates_content(source);
}

namespace {

// The parts, checked: text parts only, each {"type": "text", "text": ...}.
json checked_parts(const json& parts, const std::string& where) {
  json out = json::array();
  for (size_t j = 0; j < parts.size(); ++j) {
    const json& p = parts[j];
    const std::string at = where + "[" + std::to_string(j) + "]";
    if (!p.is_object()) reject(at + " must be an object {\"type\": \"text\", \"text\": ...}");
    const auto type = p.find("type");
    if (type == p.end() || !type->is_string())
      reject(at + ".type must be a string (\"text\"), not " +
             (type == p.end() ? std::string("missing") : describe(*type)));
    if (*type != "text")
      reject(at + ".type " + valid_utf8(type->dump()) +
             " is not supported: only text parts (it would change the prompt)");
    for (const auto& [key, value] : p.items())
      if (key != "type" && key != "text")
        reject(at + "." + valid_utf8(key) + " is not supported in a text part");
    const auto t = p.find("text");
    if (t == p.end() || !t->is_string())
      reject(at + ".text must be a string, not " +
             (t == p.end() ? std::string("missing") : describe(*t)));
    out.push_back({{"type", "text"}, {"text", *t}});
  }
  return out;
}

// Whether the template iterates a message's content itself (`{% for part in
// message['content'] %}`, as Gemma 3's does): then it gets the list of parts,
// as transformers gives it; otherwise the parts are joined with "\n" into one
// string first, as vLLM does for templates that take a string.
bool iterates_content(const std::string& source) {
  for (size_t at = source.find("{%"); at != std::string::npos; at = source.find("{%", at + 2)) {
    const size_t end = source.find("%}", at);
    if (end == std::string::npos) break;
    std::string tag = source.substr(at + 2, end - at - 2);
    const size_t first = tag.find_first_not_of("-+ \t\r\n");
    if (first == std::string::npos || tag.compare(first, 4, "for ") != 0) continue;
    const size_t in = tag.find(" in ", first);
    if (in != std::string::npos && tag.find("content", in) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

json ChatPrompt::checked_messages(const json& messages, const std::string& name) {
  if (!messages.is_array())
    reject("\"" + name + "\" must be an array of messages, not " + describe(messages));
  if (messages.empty()) reject("\"" + name + "\" is empty");
  json out = json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = name + "[" + std::to_string(i) + "]";
    if (!m.is_object())
      reject(where + " must be an object {\"role\": ..., \"content\": ...}, not " + describe(m));
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name")
        reject(where + "." + valid_utf8(key) +
               " is not supported (a message has role, content and name; tool calls and other "
               "fields would change the prompt)");
    const auto role = m.find("role");
    if (role == m.end()) reject(where + " has no \"role\"");
    if (!role->is_string()) reject(where + ".role must be a string, not " + describe(*role));
    const auto content = m.find("content");
    if (content == m.end()) reject(where + " has no \"content\"");
    json checked = {{"role", *role}};
    if (content->is_string())
      checked["content"] = *content;
    else if (content->is_array())
      checked["content"] = checked_parts(*content, where + ".content");
    else
      reject(where + ".content must be a string or a list of text parts, not " +
             describe(*content));
    if (const auto n = m.find("name"); n != m.end()) {
      if (!n->is_string()) reject(where + ".name must be a string, not " + describe(*n));
      checked["name"] = *n;
    }
    out.push_back(std::move(checked));
  }
  return out;
}

std::string ChatPrompt::render(const json& checked) const {
  ChatTemplateInput in;
  in.messages = checked;
  if (!parts_as_list_)
    for (json& m : in.messages)
      if (m["content"].is_array()) {
        std::string text;
        const json& parts = m["content"];
        for (size_t j = 0; j < parts.size(); ++j) {
          if (j) text += '\n';
          text += parts[j]["text"].get_ref<const std::string&>();
        }
        m["content"] = text;
      }
  in.add_generation_prompt = true;
  in.bos_token = bos_token_;
  in.eos_token = eos_token_;
  return template_.render(in);
}

std::string read_chat_template_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("--chat-template " + path + ": cannot open: " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw UsageError("--chat-template " + path + ": cannot read it");
  return s.str();
}

std::vector<int32_t> ChatPrompt::encode(const json& checked) const {
  return tokenizer_->encode(render(checked), /*add_special_tokens_bos=*/false);
}

namespace {

// The text of one special token, when the tokenizer has it.
std::optional<std::string> token_text(const Tokenizer& tok, int64_t id) {
  if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) return std::nullopt;
  const int32_t one[1] = {static_cast<int32_t>(id)};
  return tok.decode(one, /*skip_special_tokens=*/false);
}

}  // namespace

std::shared_ptr<const ChatPrompt> make_chat_prompt(const ChatPromptSource& src,
                                                   std::shared_ptr<const Tokenizer> tokenizer,
                                                   std::string* why_none) {
  if (!tokenizer) {
    if (!src.override_path.empty())
      throw UsageError("--chat-template " + src.override_path + ": the model " + src.model_path +
                       " has no tokenizer to encode the rendered text");
    *why_none = "\"messages\" need a chat template and a tokenizer, and the model " +
                src.model_path + " has no tokenizer: give \"prompt_tokens\"";
    return nullptr;
  }
  std::string source, from;
  if (!src.override_path.empty()) {
    source = read_chat_template_file(src.override_path);
    from = "--chat-template " + src.override_path;
  } else if (src.stored) {
    source = src.stored->source;
    from = "the chat template of " + src.model_path;
  } else {
    *why_none = "\"messages\" need a chat template, and the model " + src.model_path +
                " has none (convert it from a directory whose tokenizer_config.json has one, or "
                "run with --chat-template FILE)";
    return nullptr;
  }
  std::optional<std::string> bos, eos;
  if (src.stored) {
    bos = src.stored->bos_token;
    eos = src.stored->eos_token;
  } else {
    bos = token_text(*tokenizer, tokenizer->bos_id());
    if (!src.eos_token_ids.empty()) eos = token_text(*tokenizer, src.eos_token_ids.front());
  }
  try {
    return std::make_shared<const ChatPrompt>(source, bos, eos, std::move(tokenizer));
  } catch (const ChatTemplateError& e) {
    throw ModelError(from + ": " + e.what());
  }
}

}  // namespace tpinfer
