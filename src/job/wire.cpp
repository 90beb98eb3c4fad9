// The rank-to-rank wire form of requests and results (JSON text): group
// leaders send results to rank 0, rank 0 sends requests to other groups.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "job/jsonl.hpp"

namespace tpinfer {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Wire floats: a float widened to double prints and parses back exactly, so
// the round trip is bit-exact for finite values; JSON cannot hold inf or NaN,
// so those travel as strings.
json float_to_wire(float f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  return static_cast<double>(f);
}

float float_from_wire(const json& j) {
  if (j.is_number()) return static_cast<float>(j.get<double>());
  const std::string s = j.get<std::string>();
  if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
  if (s == "inf") return std::numeric_limits<float>::infinity();
  if (s == "-inf") return -std::numeric_limits<float>::infinity();
  throw json::other_error::create(501, "bad float on the wire: " + s, &j);
}

json parse_wire(std::string_view text, const char* what) {
  try {
    json j = json::parse(text.begin(), text.end());
    if (!j.is_object()) throw InternalError(std::string("malformed ") + what + " on the wire");
    return j;
  } catch (const json::exception& e) {
    throw InternalError(std::string("malformed ") + what + " on the wire: " + e.what());
  }
}

json floats_to_wire(const std::vector<float>& v) {
  json out = json::array();
  for (float f : v) out.push_back(float_to_wire(f));
  return out;
}

std::vector<float> floats_from_wire(const json& j) {
  if (!j.is_array()) throw json::type_error::create(302, "not an array of floats", &j);
  std::vector<float> out;
  out.reserve(j.size());
  for (const json& f : j) out.push_back(float_from_wire(f));
  return out;
}

// Per position, its k best as [token, logprob] pairs.
json top_to_wire(const std::vector<std::vector<TokenLogprob>>& top) {
  json out = json::array();
  for (const auto& position : top) {
    json p = json::array();
    for (const TokenLogprob& t : position) p.push_back({t.token, float_to_wire(t.logprob)});
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::vector<TokenLogprob>> top_from_wire(const json& j) {
  std::vector<std::vector<TokenLogprob>> out;
  for (const json& p : j) {
    auto& position = out.emplace_back();
    for (const json& t : p) position.push_back({t.at(0).get<int32_t>(), float_from_wire(t.at(1))});
  }
  return out;
}

// What requests and results both carry: the id, the input line, and the
// request's "metadata" as text, not as a value (a JSON value re-read and
// re-written could differ in key order or number spelling; a string comes back
// byte for byte).
json wire_head(const std::string& id_json, int64_t line, const std::string& metadata_json) {
  json j = {{"id", id_json}, {"line", line}};
  if (!metadata_json.empty()) j["metadata"] = metadata_json;
  return j;
}

template <typename T>
void read_head(const json& j, T& r) {
  r.id_json = j.at("id").get<std::string>();
  r.line = j.at("line").get<int64_t>();
  if (const auto m = j.find("metadata"); m != j.end()) r.metadata_json = m->get<std::string>();
}

// A request or result from its wire text: the head, then `fill` reads the
// rest; any missing or mistyped field is a broken invariant (ranks of one job
// run the same binary).
template <typename T, typename F>
T from_wire(std::string_view text, const char* what, F&& fill) {
  const json j = parse_wire(text, what);
  try {
    T r;
    read_head(j, r);
    fill(j, r);
    return r;
  } catch (const json::exception& e) {
    throw InternalError(std::string("malformed ") + what + " on the wire: " + e.what());
  }
}

}  // namespace

std::string request_to_wire(const Request& r) {
  const SamplingParams& s = r.sampling;
  json j = wire_head(r.id_json, r.line, r.metadata_json);
  j.update({{"prompt", r.prompt},
            {"n", r.n},
            {"max_new_tokens", s.max_new_tokens},
            {"temperature", float_to_wire(s.temperature)},
            {"top_k", s.top_k},
            {"top_p", float_to_wire(s.top_p)},
            {"seed", s.seed},
            {"stop", s.stop_token_ids},
            {"stop_strings", s.stop_strings},
            {"logprobs", s.logprobs},
            {"top_logprobs", s.top_logprobs},
            {"prompt_logprobs", s.prompt_logprobs},
            {"ignore_eos", s.ignore_eos}});
  return dump(j);
}

Request request_from_wire(std::string_view text) {
  return from_wire<Request>(text, "request", [](const json& j, Request& r) {
    r.prompt = j.at("prompt").get<std::vector<int32_t>>();
    r.n = j.at("n").get<int>();
    SamplingParams& s = r.sampling;
    s.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
    s.temperature = float_from_wire(j.at("temperature"));
    s.top_k = j.at("top_k").get<int64_t>();
    s.top_p = float_from_wire(j.at("top_p"));
    s.seed = j.at("seed").get<uint64_t>();
    s.stop_token_ids = j.at("stop").get<std::vector<int32_t>>();
    s.stop_strings = j.at("stop_strings").get<std::vector<std::string>>();
    s.logprobs = j.at("logprobs").get<bool>();
    s.top_logprobs = j.at("top_logprobs").get<int>();
    s.prompt_logprobs = j.at("prompt_logprobs").get<bool>();
    s.ignore_eos = j.at("ignore_eos").get<bool>();
  });
}

std::string result_to_wire(const Result& r) {
  json choices = json::array();
  for (const Completion& c : r.choices) {
    choices.push_back({{"tokens", c.tokens},
                       {"logprobs", floats_to_wire(c.logprobs)},
                       {"top_logprobs", top_to_wire(c.top_logprobs)},
                       {"finish_reason", c.finish_reason},
                       {"text_bytes", c.text_bytes}});
  }
  json j = wire_head(r.id_json, r.line, r.metadata_json);
  j.update({{"choices", std::move(choices)},
            {"prompt_tokens", r.prompt_tokens},
            {"prompt_logprobs", floats_to_wire(r.prompt_logprobs)},
            {"prompt_top_logprobs", top_to_wire(r.prompt_top_logprobs)},
            {"error", r.error},
            {"duplicate_id", r.duplicate_id}});
  return dump(j);
}

Result result_from_wire(std::string_view text) {
  return from_wire<Result>(text, "result", [](const json& j, Result& r) {
    for (const json& cj : j.at("choices")) {
      Completion& c = r.choices.emplace_back();
      c.tokens = cj.at("tokens").get<std::vector<int32_t>>();
      c.logprobs = floats_from_wire(cj.at("logprobs"));
      c.top_logprobs = top_from_wire(cj.at("top_logprobs"));
      c.finish_reason = cj.at("finish_reason").get<std::string>();
      c.text_bytes = cj.at("text_bytes").get<int64_t>();
    }
    r.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
    r.prompt_logprobs = floats_from_wire(j.at("prompt_logprobs"));
    r.prompt_top_logprobs = top_from_wire(j.at("prompt_top_logprobs"));
    r.error = j.at("error").get<std::string>();
    r.duplicate_id = j.at("duplicate_id").get<bool>();
  });
}

}  // namespace tpinfer
