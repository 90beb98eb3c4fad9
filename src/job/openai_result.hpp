#pragma once
// OpenAI Batch API output lines, one per request:
//   {"id", "custom_id", "response": {"status_code": 200, "request_id",
//    "body": {"id", "object", "created", "model", "choices", "usage"}}, "error": null}
// and for a line that could not run:
//   {"id", "custom_id", "response": null, "error": {"code", "message", "line"}}.
// Ids derive from the custom_id (a line without one: from its line number), and
// "created" is the job's start (kept in the manifest across --resume), so a
// resumed job writes the same bytes for the same request.
#include <cstdint>
#include <string>

#include "base/request.hpp"
#include "job/openai_request.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {

// `envelope` may be null only for an error result (a line the reader could not
// even open). The text of a completion is job/result_text's.
std::string openai_result_to_json(const Result& r, const OpenAiEnvelope* envelope,
                                  const Tokenizer* tokenizer, int64_t created);

// The error codes of error lines.
inline constexpr const char* kOpenAiInvalidRequest = "invalid_request";
inline constexpr const char* kOpenAiDuplicateCustomId = "duplicate_custom_id";

}  // namespace tpinfer
