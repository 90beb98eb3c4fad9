#pragma once
// OpenAI Batch API request lines (what `vllm run-batch` also reads):
//   {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions" | "/v1/completions",
//    "body": {...}}
// read into the engine's Request, and the envelope rank 0 keeps to write the
// line's OpenAI result (job/openai_result.hpp). The README ("Chat
// conversations and OpenAI batch files") lists the body fields; a field that would change the result and is not supported makes
// the line an error naming it (never silently ignored), bookkeeping fields
// (user, metadata, store, service_tier) are accepted.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "job/jsonl.hpp"

namespace tpinfer {

enum class OpenAiEndpoint { kChat, kCompletions };

struct OpenAiEnvelope {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  std::optional<std::string> custom_id;  // none when the line has no usable one
  std::string model;                     // echoed back: the body's, else the model file's name
  // What the result shows: chat logprobs (with top_logprobs k), or the
  // completions' logprobs object (k best per position) when logprobs was given.
  bool logprobs = false;
  int top_logprobs = 0;
  // Completions with echo: the prompt's text first (as given, or decoded from
  // its ids), and with logprobs its tokens' log-probabilities first.
  bool echo = false;
  std::string echo_text;
  std::vector<int32_t> prompt;
};

// One OpenAI batch line (not blank) into a request or an error result, with
// its envelope either way. The Request's id is the custom_id (as JSON text),
// so duplicates, seeds and --resume work as for native ids.
ParsedLine parse_openai_line(std::string_view text, int64_t line_no, const RequestRules& rules);

}  // namespace tpinfer
