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
  // The k most likely tokens at each generated position (0: none; at most
  // kMaxTopLogprobs), from the same logits as the drawn token.
  int top_logprobs = 0;
  // The log-probability of every prompt token after the first, given the ones
  // before it (log-likelihood scoring).
  bool prompt_logprobs = false;
  bool ignore_eos = false;  // generate max_new_tokens even past EOS (benchmarks)
};

inline constexpr int kMaxTopLogprobs = 20;
inline constexpr int kMaxCompletions = 128;  // n per request

struct Request {
  std::string id_json;  // the id exactly as JSON text ("\"abc\"" or "42"): opaque to the engine
  int64_t line = 0;     // 1-based line in the input file
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  // Completions of this prompt (n): completion i draws with seed
  // completion_seed(sampling.seed, i), and all share the prompt's KV blocks.
  int n = 1;
  // The line's "metadata" value as JSON text, handed back on its result line
  // untouched; empty when the line has none (JSON text is never empty).
  std::string metadata_json;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// One generated sequence of a request.
struct Completion {
  std::vector<int32_t> tokens;  // generated tokens
  std::vector<float> logprobs;  // per generated token, when asked
  // Per generated token, the top_logprobs most likely, most likely first.
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  std::string finish_reason;  // "stop" (EOS, stop token or stop string) | "length"
  // When a stop string ended it: the bytes of its decoded text before the stop
  // string (the result's text is cut there); -1 otherwise.
  int64_t text_bytes = -1;
};

struct Result {
  std::string id_json;  // empty for a line without a usable id
  int64_t line = 0;
  std::vector<Completion> choices;  // the request's n completions, in order
  int64_t prompt_tokens = 0;
  // When asked: prompt_tokens - 1 values, token i+1 given tokens 0..i.
  std::vector<float> prompt_logprobs;
  // With prompt_logprobs and top_logprobs: the k most likely at each of those
  // positions, most likely first.
  std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;
  std::string error;          // non-empty: the line was rejected
  bool duplicate_id = false;  // error for a repeated id: written as "duplicate_id", not "id"
  std::string metadata_json;  // the request's "metadata", copied from it; empty: none
};

}  // namespace tpinfer
