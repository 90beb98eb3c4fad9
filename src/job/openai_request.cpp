#include "job/openai_request.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "job/line_checks.hpp"

namespace tpinfer {

namespace {

using json = nlohmann::json;

constexpr const char* kChatUrl = "/v1/chat/completions";
constexpr const char* kCompletionsUrl = "/v1/completions";

// Body fields tpinfer reads, for both endpoints and per endpoint, and those it
// accepts without effect on the result. Any other field is refused: it might
// change the result.
constexpr std::string_view kSharedFields[] = {"model",
                                              "max_tokens",
                                              "temperature",
                                              "top_p",
                                              "n",
                                              "stop",
                                              "seed",
                                              "logprobs",
                                              "presence_penalty",
                                              "frequency_penalty",
                                              "repetition_penalty",
                                              "top_k",
                                              "ignore_eos",
                                              "stream"};
constexpr std::string_view kChatFields[] = {"messages", "max_completion_tokens", "top_logprobs"};
constexpr std::string_view kCompletionsFields[] = {"prompt", "echo", "best_of", "suffix"};
constexpr std::string_view kBookkeeping[] = {"user", "metadata", "store", "service_tier"};

template <size_t N>
bool listed(const std::string_view (&list)[N], const std::string& key) {
  return std::find(std::begin(list), std::end(list), key) != std::end(list);
}

// null, [] and {} ask for nothing (clients often send "tools": [] or "logit_bias": {}).
bool neutral(const json& v) {
  return v.is_null() || ((v.is_array() || v.is_object()) && v.empty());
}

const json* get(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// A penalty the engine does not apply: refused unless it is the value that
// leaves the distribution as it is.
void penalty(const json& body, const char* key, double neutral_value) {
  const json* v = get(body, key);
  if (!v) return;
  const std::string name = std::string("body.") + key;
  if (number_field(*v, name) != neutral_value)
    reject("\"" + name + "\" = " + v->dump() +
           " is not supported (tpinfer applies no penalties, and running without it would "
           "change the result); leave it out or set it to " +
           (neutral_value == 0 ? "0" : "1"));
}

void common_sampling(const json& body, const RequestRules& rules, Request& req) {
  SamplingParams& s = req.sampling;
  if (const json* v = get(body, "temperature")) temperature_field(*v, "body.temperature", s);
  if (const json* v = get(body, "top_p")) top_p_field(*v, "body.top_p", s);
  if (const json* v = get(body, "top_k")) {
    // vLLM's extension; -1 is its "off".
    const int64_t k =
        int_field(*v, "body.top_k", -1, std::numeric_limits<int64_t>::max(), "an integer >= -1");
    s.top_k = k < 0 ? 0 : k;
  }
  if (const json* v = get(body, "n"))
    req.n = static_cast<int>(int_field(*v, "body.n", 1, kMaxCompletions, "an integer in [1, 128]"));
  if (const json* v = get(body, "stop")) stop_field(*v, "body.stop", rules, s);
  s.seed = derived_seed(rules.job_seed, req.id_json);
  if (const json* v = get(body, "seed")) s.seed = seed_field(*v, "body.seed");
  if (const json* v = get(body, "ignore_eos")) s.ignore_eos = bool_field(*v, "body.ignore_eos");
  if (const json* v = get(body, "stream"); v && bool_field(*v, "body.stream"))
    reject("\"body.stream\" is true: a batch line's result is written whole, not streamed");
}

void max_tokens(const json& body, const char* key, const RequestRules& rules, Request& req) {
  if (const json* v = get(body, key)) {
    req.sampling.max_new_tokens = int_field(*v, std::string("body.") + key, 1,
                                            std::numeric_limits<int64_t>::max(), "an integer >= 1");
  }
  fit_context(req.prompt, rules, req.sampling);
}

void parse_chat(const json& body, const RequestRules& rules, Request& req, OpenAiEnvelope& env) {
  const json* messages = get(body, "messages");
  if (!messages) reject("\"body.messages\" is missing: a chat request needs the conversation");
  req.prompt = encode_messages(*messages, "body.messages", rules);
  fit_context(req.prompt, rules, req.sampling);
  if (get(body, "max_completion_tokens") && get(body, "max_tokens"))
    reject("give \"body.max_completion_tokens\" or \"body.max_tokens\", not both");
  max_tokens(body, get(body, "max_tokens") ? "max_tokens" : "max_completion_tokens", rules, req);
  common_sampling(body, rules, req);
  SamplingParams& s = req.sampling;
  if (const json* v = get(body, "logprobs")) s.logprobs = bool_field(*v, "body.logprobs");
  if (const json* v = get(body, "top_logprobs")) {
    s.top_logprobs = static_cast<int>(
        int_field(*v, "body.top_logprobs", 0, kMaxTopLogprobs, "an integer in [0, 20]"));
    if (!s.logprobs)
      reject("\"body.top_logprobs\" needs \"body.logprobs\": true (as OpenAI's API requires)");
  }
  env.logprobs = s.logprobs;
  env.top_logprobs = s.top_logprobs;
}

void parse_completions(const json& body, const RequestRules& rules, Request& req,
                       OpenAiEnvelope& env) {
  const json* prompt = get(body, "prompt");
  if (!prompt) reject("\"body.prompt\" is missing");
  // One prompt a line: a list of one prompt is that prompt.
  const json* one = prompt;
  if (prompt->is_array() && prompt->size() == 1 &&
      ((*prompt)[0].is_string() || (*prompt)[0].is_array()))
    one = &(*prompt)[0];
  if (one->is_string()) {
    req.prompt = encode_text_prompt(one->get<std::string>(), "body.prompt", rules, "token ids");
    env.echo_text = one->get<std::string>();
  } else if (one->is_array() && !one->empty() && (*one)[0].is_number()) {
    req.prompt = token_ids(*one, "body.prompt", rules.vocab_size);
    if (rules.tokenizer) env.echo_text = rules.tokenizer->decode(req.prompt, true);
  } else if (one->is_array() && one->empty()) {
    reject("\"body.prompt\" is empty");
  } else if (one->is_array()) {
    reject("\"body.prompt\" holds " + std::to_string(one->size()) +
           " prompts: give one prompt a line (a string or an array of token ids)");
  } else {
    reject("\"body.prompt\" must be a string or an array of token ids, not " + describe(*one));
  }
  fit_context(req.prompt, rules, req.sampling);
  max_tokens(body, "max_tokens", rules, req);
  common_sampling(body, rules, req);
  if (const json* v = get(body, "best_of")) {
    if (int_field(*v, "body.best_of", 1, kMaxCompletions, "an integer in [1, 128]") != req.n)
      reject("\"body.best_of\" other than n is not supported (it would change the result)");
  }
  if (const json* v = get(body, "suffix");
      v && !(v->is_string() && v->get_ref<const std::string&>().empty()))
    reject("\"body.suffix\" is not supported (it would change the result)");
  SamplingParams& s = req.sampling;
  if (const json* v = get(body, "logprobs")) {
    s.top_logprobs = static_cast<int>(
        int_field(*v, "body.logprobs", 0, kMaxTopLogprobs, "an integer in [0, 20]"));
    s.logprobs = true;
    env.logprobs = true;
    env.top_logprobs = s.top_logprobs;
  }
  if (const json* v = get(body, "echo")) env.echo = bool_field(*v, "body.echo");
  if (env.echo) {
    env.prompt = req.prompt;
    // The prompt's own log-probabilities lead the echoed logprobs.
    s.prompt_logprobs = env.logprobs;
  } else {
    env.echo_text.clear();
  }
}

void check_body_fields(const json& body, OpenAiEndpoint endpoint) {
  for (const auto& [key, value] : body.items()) {
    const bool known = listed(kSharedFields, key) ||
                       (endpoint == OpenAiEndpoint::kChat ? listed(kChatFields, key)
                                                          : listed(kCompletionsFields, key));
    if (known || listed(kBookkeeping, key) || neutral(value)) continue;
    reject("\"body." + valid_utf8(key) +
           "\" is not supported by tpinfer; it would change the result, so the request is "
           "refused rather than run without it");
  }
}

}  // namespace

ParsedLine parse_openai_line(std::string_view text, int64_t line_no, const RequestRules& rules) {
  ParsedLine out;
  auto env = std::make_shared<OpenAiEnvelope>();
  env->model = rules.model_name;
  out.envelope = env;
  const std::optional<json> parsed = object_line(text, line_no, "a batch request", out.error);
  if (!parsed) return out;
  const json& obj = *parsed;
  const json* custom_id = get(obj, "custom_id");
  std::string id_json;
  if (custom_id && custom_id->is_string()) {
    env->custom_id = custom_id->get<std::string>();
    id_json = custom_id->dump();
  }
  try {
    if (!custom_id) reject("missing \"custom_id\"");
    if (!custom_id->is_string())
      reject("\"custom_id\" must be a string, not " + describe(*custom_id));
    for (const auto& [key, value] : obj.items())
      if (key != "custom_id" && key != "method" && key != "url" && key != "body")
        reject("unknown field \"" + valid_utf8(key) +
               "\" (a batch request has custom_id, method, url and body)");
    const json* method = get(obj, "method");
    if (!method || *method != "POST")
      reject("\"method\" must be \"POST\", not " +
             (method ? valid_utf8(method->dump()) : std::string("missing")));
    const json* url = get(obj, "url");
    if (url && *url == kChatUrl) {
      env->endpoint = OpenAiEndpoint::kChat;
    } else if (url && *url == kCompletionsUrl) {
      env->endpoint = OpenAiEndpoint::kCompletions;
    } else {
      reject("\"url\" must be \"" + std::string(kChatUrl) + "\" or \"" + kCompletionsUrl +
             "\", not " + (url ? valid_utf8(url->dump()) : std::string("missing")));
    }
    const json* body = get(obj, "body");
    if (!body || !body->is_object())
      reject("\"body\" must be an object, not " + (body ? describe(*body) : "missing"));
    if (const json* m = get(*body, "model")) {
      if (!m->is_string()) reject("\"body.model\" must be a string, not " + describe(*m));
      env->model = m->get<std::string>();
    }
    check_body_fields(*body, env->endpoint);
    penalty(*body, "presence_penalty", 0);
    penalty(*body, "frequency_penalty", 0);
    penalty(*body, "repetition_penalty", 1);
    Request req;
    req.id_json = id_json;
    req.line = line_no;
    req.sampling = rules.defaults;
    if (env->endpoint == OpenAiEndpoint::kChat)
      parse_chat(*body, rules, req, *env);
    else
      parse_completions(*body, rules, req, *env);
    out.request = std::move(req);
  } catch (const LineError& e) {
    out.error = error_result(line_no, id_json, e.message);
  }
  return out;
}

}  // namespace tpinfer
