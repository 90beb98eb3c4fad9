#pragma once
// A request and its result, as the engine sees them (no file format here).
#include <cstdint>
#include <string>
#include <vector>

namespace tpinfer {

struct SamplingParams {
  int64_t max_new_tokens = 128;
  float temperature = 0.0f;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;  // per request; the reader derives it from --seed and the id when absent
  std::vector<int32_t> stop_token_ids;
  // Generation ends once the generated text contains one of these (needs the
  // model's tokenizer; see text/stop_matcher.hpp).
  std::vector<std::string> stop_strings;
  bool logprobs = false;
  bool ignore_eos = false;  // generate max_new_tokens even past EOS (benchmarks)
};

struct Request {
  std::string id_json;  // the id exactly as JSON text ("\"abc\"" or "42"): opaque to the engine
  int64_t line = 0;     // 1-based line in the input file
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  // The line's "metadata" value as JSON text, handed back on its result line
  // untouched; empty when the line has none (JSON text is never empty).
  std::string metadata_json;
};

struct Result {
  std::string id_json;  // empty for a line without a usable id
  int64_t line = 0;
  std::vector<int32_t> tokens;  // generated tokens
  std::vector<float> logprobs;  // per generated token, when asked
  std::string finish_reason;    // "stop" (EOS, stop token or stop string) | "length"
  int64_t prompt_tokens = 0;
  std::string error;  // non-empty: the line was rejected
  // The tokens decoded, when the model has a tokenizer; after a stop string, the
  // text before it (set by the engine; else rank 0 decodes the tokens).
  std::string text;
  bool has_text = false;
  bool duplicate_id = false;  // error for a repeated id: written as "duplicate_id", not "id"
  std::string metadata_json;  // the request's "metadata", copied from it; empty: none
};

}  // namespace tpinfer
