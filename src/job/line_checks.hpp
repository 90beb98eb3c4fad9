#pragma once
// The checks a request line's values go through, shared by the native and the
// OpenAI batch readers: each rule broken throws LineError with the message the
// line's error result carries.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/request.hpp"
#include "job/jsonl.hpp"

namespace tpinfer {

// Thrown inside a reader and turned into an error result at its top level, so
// each check is one line and the first rule broken is the one reported.
struct LineError {
  std::string message;
};

[[noreturn]] void reject(std::string message);

// "an integer", "a string", ...: never the value itself, which may be huge or
// deeply nested (dumping it could take the stack or flood the output).
std::string describe(const nlohmann::json& v);
// Messages end up inside JSON output lines, which must be valid UTF-8.
std::string valid_utf8(const std::string& s);
// nlohmann's parse message, without its prefix and cut when long.
std::string short_parse_reason(const nlohmann::json::exception& e);

// A line's error result: "line N: message".
Result error_result(int64_t line_no, std::string id_json, const std::string& message);
// The line as a JSON object; else nothing, with `error` set to its error
// result (not JSON, or `a_what` -- "a request" -- is not an object).
std::optional<nlohmann::json> object_line(std::string_view text, int64_t line_no,
                                          const std::string& a_what, std::optional<Result>& error);

// A JSON integer (5.0 is refused) in [lo, hi]; `name` is the field as messages show it.
int64_t int_field(const nlohmann::json& v, const std::string& name, int64_t lo, int64_t hi,
                  const char* range_text);
double number_field(const nlohmann::json& v, const std::string& name);
bool bool_field(const nlohmann::json& v, const std::string& name);
// A seed: an integer in [0, 2^64).
uint64_t seed_field(const nlohmann::json& v, const std::string& name);
// temperature >= 0, 0 < top_p <= 1, top_k >= 0, into `s`.
void temperature_field(const nlohmann::json& v, const std::string& name, SamplingParams& s);
void top_p_field(const nlohmann::json& v, const std::string& name, SamplingParams& s);

// Token ids: every element an integer in [0, vocab).
std::vector<int32_t> token_ids(const nlohmann::json& arr, const std::string& name,
                               int64_t vocab_size);
// "stop": a string, or an array of stop strings (need a tokenizer) and token ids.
void stop_field(const nlohmann::json& v, const std::string& name, const RequestRules& rules,
                SamplingParams& s);

// A text prompt through the model's tokenizer (BOS as its post-processor says),
// checked to lie in the model's vocabulary; without a tokenizer, the error
// says to give `instead`.
std::vector<int32_t> encode_text_prompt(const std::string& text, const std::string& name,
                                        const RequestRules& rules, const std::string& instead);
// Messages rendered by the job's chat template and tokenized (no BOS added).
std::vector<int32_t> encode_messages(const nlohmann::json& messages, const std::string& name,
                                     const RequestRules& rules);
// The prompt fits the context with room for one token; clamps max_new_tokens to fit.
void fit_context(const std::vector<int32_t>& prompt, const RequestRules& rules, SamplingParams& s);

// The seed of a request without one: hash(job seed, the id's canonical JSON text).
uint64_t derived_seed(uint64_t job_seed, const std::string& id_json);

}  // namespace tpinfer
