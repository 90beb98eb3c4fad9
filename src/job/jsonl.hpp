#pragma once
// Requests in, results out, as JSON lines (the design's "Requests and results").
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/request.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {

class ChatPrompt;
struct OpenAiEnvelope;

// The two kinds of input file: tpinfer's own request lines, and OpenAI Batch
// API lines ({"custom_id", "method", "url", "body"}; job/openai_request.hpp).
enum class InputFormat { kTpinfer, kOpenAi };
const char* input_format_name(InputFormat f);  // "tpinfer" | "openai"
// The format of a file from its first non-blank line: OpenAI when it is a JSON
// object with "custom_id" or with "url" and "body"; tpinfer otherwise (an
// empty file, a bad first line). Throws InputError if the file cannot be read.
InputFormat detect_input_format(const std::string& path);

// What a request line may ask of this model, and the job-wide defaults.
struct RequestRules {
  int64_t vocab_size = 0;
  int64_t max_context = 0;  // prompt + 1 must fit; max_new_tokens is clamped to fit
  // The model's tokenizer, when it has one: text "prompt" and string "stop"
  // need it (a text prompt gets BOS as the tokenizer's post-processor says).
  std::shared_ptr<const Tokenizer> tokenizer;
  SamplingParams defaults;  // from the command line
  uint64_t job_seed = 0;    // a request without "seed" gets hash(job_seed, id)
  InputFormat format = InputFormat::kTpinfer;
  // The job's chat template, for "messages"; without one, such a line's error
  // is no_chat_reason.
  std::shared_ptr<const ChatPrompt> chat;
  std::string no_chat_reason;
  std::string model_name;  // an OpenAI result's "model" when the request names none
};

// One parsed line: a request, or an error result naming the line and the rule.
struct ParsedLine {
  std::optional<Request> request;
  std::optional<Result> error;
  // OpenAI lines: what their result line needs beyond the Result (custom_id,
  // endpoint, model, echo), kept on rank 0 while the request runs.
  std::shared_ptr<const OpenAiEnvelope> envelope;
};

// Parses one input line (not blank). Checks: valid JSON object; "id" is a string
// or an integer; exactly one of "prompt_tokens" (non-empty array of ints in
// [0, vocab)), "prompt" (text: needs a tokenizer) or "messages" (a
// conversation: needs the job's chat template, job/chat_prompt.hpp); n in
// [1, kMaxCompletions], top_logprobs in [0, kMaxTopLogprobs] (it implies
// logprobs), prompt_logprobs: bool; optional settings with
// their types and ranges (max_new_tokens >= 1, temperature >= 0, top_k >= 0,
// 0 < top_p <= 1, seed >= 0 integer, stop: a string or an array of non-empty
// strings (need a tokenizer) and token ids, logprobs: bool);
// the prompt fits max_context. "metadata" may be any JSON value; it is kept as
// JSON text (Request::metadata_json) for the result line. A field not in
// request_fields() makes the line an error naming it, with the nearest known
// field when one is close (a typo must not silently run other settings).
// An error result of a line that had "metadata" carries it too.
ParsedLine parse_request_line(std::string_view text, int64_t line_no, const RequestRules& rules);

// Every field a request line may have, in the order the README lists them.
std::span<const std::string_view> request_fields();

// Reads a JSONL file line by line (rules.format says which parser), skipping
// blank lines, turning repeated ids (custom_ids) into duplicate-id errors.
// Throws InputError if the file cannot be opened.
class RequestReader {
 public:
  RequestReader(const std::string& path, RequestRules rules);
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;
  // The next non-blank line parsed; nullopt at end of file.
  std::optional<ParsedLine> next();

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
  RequestRules rules_;
  int64_t line_no_ = 0;
  std::unordered_map<std::string, int64_t> first_line_of_id_;
};

// One result as a JSON line (no trailing newline), with "text" decoded by
// `tokenizer` (none: no text):
//  {"id":..,["text":..,]"tokens":[..],"finish_reason":..,"prompt_tokens":N,"completion_tokens":M
//   [,"logprobs":[..]][,"top_logprobs":[[{"token":..,"logprob":..},..],..]][,"prompt_logprobs":[null,..]][,"metadata":..]}
//  with n > 1 completions, instead of text..finish_reason and the logprobs:
//   "choices":[{"index":i,["text":..,]"tokens":[..],"finish_reason":..,"completion_tokens":M[,"logprobs":..]},..]
//  errors: {"id":..,"line":N,"error":".."[,"metadata":..]} or
//  {"duplicate_id":..,"line":N,"error":".."[,"metadata":..]}
std::string result_to_json(const Result& r, const Tokenizer* tokenizer = nullptr);
// Request/Result <-> JSON text, for sending between ranks.
std::string request_to_wire(const Request& r);
Request request_from_wire(std::string_view text);
std::string result_to_wire(const Result& r);
Result result_from_wire(std::string_view text);

// Appends whole lines to the output file; rank 0 is the only writer.
class OutputWriter {
 public:
  // Opens for append (creating it). Throws InputError naming the path if it cannot.
  explicit OutputWriter(const std::string& path);
  ~OutputWriter();  // flushes, fsyncs, closes; never throws
  OutputWriter(const OutputWriter&) = delete;
  OutputWriter& operator=(const OutputWriter&) = delete;
  // Writes `line` + '\n' as one unit; throws Error (exit 1) naming the path and
  // errno text (ENOSPC, EFBIG) if it cannot, leaving earlier lines intact.
  void write_line(const std::string& line);
  // fdatasync; throws like write_line. Then checks that the path still names
  // this file: an output removed or replaced while the job runs is a
  // RestartableError (exit 75), since results written since are not in it.
  void sync();
  // fdatasync, ignoring errors: for a last flush on the way out of a failure.
  void sync_quietly() noexcept;
  // sync() when at least `interval_s` passed since the last one.
  void maybe_sync(double interval_s);
  int64_t lines_written() const { return lines_; }

 private:
  int fd_ = -1;
  std::string path_;
  uint64_t device_ = 0, inode_ = 0;  // the file opened, to notice it being replaced
  int64_t lines_ = 0;
  double last_sync_ = 0.0;
};

}  // namespace tpinfer
