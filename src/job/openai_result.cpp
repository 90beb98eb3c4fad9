#include "job/openai_result.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/error.hpp"
#include "base/philox.hpp"
#include "job/result_text.hpp"

namespace tpinfer {

namespace {

using ojson = nlohmann::ordered_json;

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A stable name for the request: from its custom_id, or its line when it has none.
std::string request_key(const Result& r, const OpenAiEnvelope* env) {
  const std::string key = env && env->custom_id && !r.duplicate_id
                              ? "custom_id:" + *env->custom_id
                              : "line:" + std::to_string(r.line);
  // splitmix64's finaliser: FNV-1a alone leaves similar keys with similar ids.
  const auto mix = [](uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  const uint64_t h = fnv1a64(key.data(), key.size());
  // Two words, so ids have 32 hex digits as OpenAI's do.
  return hex16(mix(h)) + hex16(mix(h ^ 0x9e3779b97f4a7c15ull));
}

// The float as the shortest text that reads back as it, carried by a double
// (nlohmann writes doubles shortest-round-trip), or null when not finite.
ojson logprob_value(float f) {
  if (!std::isfinite(f)) return nullptr;
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf - 1, f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

// One token's text: its bytes decoded alone (special tokens included); ids
// past the tokenizer (a vocab padded past it) have none.
std::string token_string(const Tokenizer* tok, int32_t id) {
  if (!tok || id < 0 || static_cast<size_t>(id) >= tok->vocab_size()) return "";
  const int32_t one[1] = {id};
  return tok->decode(one, /*skip_special_tokens=*/false);
}

ojson bytes_of(const std::string& s) {
  ojson out = ojson::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Where each token's text starts in the decoded text (code points), from `base`.
std::vector<int64_t> text_offsets(const Tokenizer* tok, const std::vector<int32_t>& ids,
                                  int64_t base) {
  std::vector<int64_t> out;
  out.reserve(ids.size());
  if (!tok) {
    out.assign(ids.size(), base);
    return out;
  }
  StreamDecoder d(*tok, /*skip_special_tokens=*/true);
  for (int32_t id : ids) {
    out.push_back(base);
    if (id >= 0 && static_cast<size_t>(id) < tok->vocab_size()) base += code_points(d.push(id));
  }
  return out;
}

ojson chat_logprobs(const Completion& c, const Tokenizer* tok) {
  ojson content = ojson::array();
  for (size_t i = 0; i < c.tokens.size() && i < c.logprobs.size(); ++i) {
    const std::string t = token_string(tok, c.tokens[i]);
    ojson top = ojson::array();
    if (i < c.top_logprobs.size())
      for (const TokenLogprob& k : c.top_logprobs[i]) {
        const std::string kt = token_string(tok, k.token);
        top.push_back(
            {{"token", kt}, {"logprob", logprob_value(k.logprob)}, {"bytes", bytes_of(kt)}});
      }
    content.push_back({{"token", t},
                       {"logprob", logprob_value(c.logprobs[i])},
                       {"bytes", bytes_of(t)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

// The legacy completions logprobs object; with echo, the prompt's tokens
// first (the first has nothing before it: null), each with its k best.
ojson completion_logprobs(const Result& r, const Completion& c, const OpenAiEnvelope& env,
                          const Tokenizer* tok) {
  ojson tokens = ojson::array(), values = ojson::array(), offsets = ojson::array();
  ojson top = env.top_logprobs > 0 ? ojson::array() : ojson(nullptr);
  int64_t base = 0;
  if (env.echo) {
    const std::vector<int64_t> at = text_offsets(tok, env.prompt, 0);
    for (size_t i = 0; i < env.prompt.size(); ++i) {
      const std::string t = token_string(tok, env.prompt[i]);
      tokens.push_back(t);
      const bool known = i > 0 && i - 1 < r.prompt_logprobs.size();
      values.push_back(known ? logprob_value(r.prompt_logprobs[i - 1]) : ojson(nullptr));
      if (top.is_array()) {
        ojson best = known ? ojson::object() : ojson(nullptr);
        if (known && i - 1 < r.prompt_top_logprobs.size())
          for (const TokenLogprob& k : r.prompt_top_logprobs[i - 1])
            best[token_string(tok, k.token)] = logprob_value(k.logprob);
        else if (known)
          best[t] = logprob_value(r.prompt_logprobs[i - 1]);
        top.push_back(std::move(best));
      }
      offsets.push_back(at[i]);
    }
    base = code_points(env.echo_text);
  }
  const std::vector<int64_t> at = text_offsets(tok, c.tokens, base);
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    tokens.push_back(token_string(tok, c.tokens[i]));
    values.push_back(i < c.logprobs.size() ? logprob_value(c.logprobs[i]) : ojson(nullptr));
    if (top.is_array()) {
      ojson best = ojson::object();
      if (i < c.top_logprobs.size())
        for (const TokenLogprob& k : c.top_logprobs[i])
          best[token_string(tok, k.token)] = logprob_value(k.logprob);
      top.push_back(std::move(best));
    }
    offsets.push_back(at[i]);
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(values)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

std::string dump(const ojson& j) {
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

}  // namespace

std::string openai_result_to_json(const Result& r, const OpenAiEnvelope* env, const Tokenizer* tok,
                                  int64_t created) {
  const std::string key = request_key(r, env);
  ojson line;
  line["id"] = "batch_req_" + key;
  line["custom_id"] = env && env->custom_id ? ojson(*env->custom_id) : ojson(nullptr);
  if (!r.error.empty()) {
    line["response"] = nullptr;
    line["error"] = {{"code", r.duplicate_id ? kOpenAiDuplicateCustomId : kOpenAiInvalidRequest},
                     {"message", r.error},
                     {"line", r.line}};
    return dump(line);
  }
  TPINFER_ASSERT(env != nullptr, "an OpenAI result without its envelope");
  TPINFER_ASSERT(!r.choices.empty(), "an OpenAI result without completions");
  const bool chat = env->endpoint == OpenAiEndpoint::kChat;
  ojson choices = ojson::array();
  int64_t completion_tokens = 0;
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const Completion& c = r.choices[i];
    completion_tokens += static_cast<int64_t>(c.tokens.size());
    const std::string text = tok ? completion_text(*tok, c) : std::string();
    ojson choice;
    choice["index"] = i;
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
      choice["logprobs"] = env->logprobs ? chat_logprobs(c, tok) : ojson(nullptr);
    } else {
      choice["text"] = env->echo ? env->echo_text + text : text;
      choice["logprobs"] = env->logprobs ? completion_logprobs(r, c, *env, tok) : ojson(nullptr);
    }
    choice["finish_reason"] = c.finish_reason;
    choices.push_back(std::move(choice));
  }
  ojson body;
  body["id"] = (chat ? "chatcmpl-" : "cmpl-") + key;
  body["object"] = chat ? "chat.completion" : "text_completion";
  body["created"] = created;
  body["model"] = env->model;
  body["choices"] = std::move(choices);
  body["usage"] = {{"prompt_tokens", r.prompt_tokens},
                   {"completion_tokens", completion_tokens},
                   {"total_tokens", r.prompt_tokens + completion_tokens}};
  line["response"] = {
      {"status_code", 200}, {"request_id", "req_" + key}, {"body", std::move(body)}};
  line["error"] = nullptr;
  return dump(line);
}

}  // namespace tpinfer
