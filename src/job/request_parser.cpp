// Request lines in: one JSON object a line, checked against the model's rules.
// A bad line never stops the job; it becomes an error result naming the line.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "job/jsonl.hpp"
#include "job/line_checks.hpp"
#include "job/openai_request.hpp"

namespace tpinfer {

namespace {

using json = nlohmann::json;

// Every field a request line may have. The parser can read a field only
// through this enum, and the unknown-field check walks the same table, so a
// field added here is known to both and one missing here cannot be read.
enum class Field : size_t {
  kId,
  kPrompt,
  kPromptTokens,
  kMessages,
  kMaxNewTokens,
  kTemperature,
  kTopK,
  kTopP,
  kSeed,
  kStop,
  kN,
  kLogprobs,
  kTopLogprobs,
  kPromptLogprobs,
  kIgnoreEos,
  kMetadata,
  kCount
};

constexpr std::array<std::string_view, static_cast<size_t>(Field::kCount)> kFields = {
    "id",
    "prompt",
    "prompt_tokens",
    "messages",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "stop",
    "n",
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "ignore_eos",
    "metadata"};
static_assert(std::none_of(kFields.begin(), kFields.end(),
                           [](std::string_view f) { return f.empty(); }),
              "every Field needs its name in kFields");

// The literals above end in NUL, so data() is a C string.
const char* name_of(Field f) {
  return kFields[static_cast<size_t>(f)].data();
}

const json* find_field(const json& obj, Field f) {
  const auto it = obj.find(name_of(f));
  return it == obj.end() ? nullptr : &*it;
}

// A field that is absent or null takes its default (generators often write null).
const json* optional_field(const json& obj, Field f) {
  const json* v = find_field(obj, f);
  return v && !v->is_null() ? v : nullptr;
}

// Lower case, '-' as '_': "Top-K" is "top_k" misspelt, not another field.
std::string normalized(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '-') c = '_';
  }
  return out;
}

// Edits (insert, delete, replace, swap of neighbours) from a to b, each
// character edited at most once (optimal string alignment).
size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// The known field a misspelt one most likely meant: the same but for case and
// '-'/'_', or at most 2 edits away (and not every character of it edited, so
// "xy" is not offered "id"). Ties go to the earlier field of the table.
const char* nearest_field(std::string_view unknown) {
  constexpr size_t kMaxEdits = 2;
  const std::string u = normalized(unknown);
  // Other engines' names for our fields (OpenAI, vLLM, TGI), which no edit
  // distance would pair.
  static constexpr std::pair<std::string_view, const char*> kOtherNames[] = {
      {"max_tokens", "max_new_tokens"},
      {"max_completion_tokens", "max_new_tokens"},
      {"stop_token_ids", "stop"},
      {"stop_sequences", "stop"},
      {"input_ids", "prompt_tokens"},
      {"request_id", "id"},
      {"custom_id", "id"},
      {"random_seed", "seed"}};
  for (const auto& [other, ours] : kOtherNames)
    if (u == other) return ours;
  const char* best = nullptr;
  size_t best_edits = kMaxEdits + 1;
  for (const std::string_view f : kFields) {
    const size_t gap = u.size() > f.size() ? u.size() - f.size() : f.size() - u.size();
    if (gap > kMaxEdits) continue;
    const size_t edits = edit_distance(u, f);
    if (edits < best_edits && edits < f.size()) {
      best = f.data();
      best_edits = edits;
    }
  }
  return best;
}

// A field name as a message shows it: quoted and escaped, and cut when long
// (a key may be any length; a cut inside a UTF-8 character becomes U+FFFD).
std::string quoted_name(const std::string& name) {
  constexpr size_t kMax = 64;
  const json shown = name.size() > kMax ? name.substr(0, kMax) + "..." : name;
  return shown.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Why the line's fields are not all known, or "" when they are.
std::string unknown_fields_message(const json& obj) {
  constexpr size_t kShown = 3;
  std::vector<std::pair<std::string, const char*>> shown;  // name, nearest known field
  size_t count = 0;
  bool unmatched = false;
  for (const auto& [key, value] : obj.items()) {
    if (std::find(kFields.begin(), kFields.end(), key) != kFields.end()) continue;
    ++count;
    const char* near = nearest_field(key);
    unmatched = unmatched || !near;
    if (shown.size() < kShown) shown.emplace_back(quoted_name(key), near);
  }
  if (count == 0) return "";
  const auto suggestion = [](const char* near) {
    return std::string("did you mean \"") + near + "\"?";
  };
  std::string message;
  if (count == 1) {
    message = "unknown field " + shown[0].first;
    if (shown[0].second) return message + ": " + suggestion(shown[0].second);
  } else {
    message = "unknown fields ";
    for (size_t i = 0; i < shown.size(); ++i) {
      if (i) message += ", ";
      message += shown[i].first;
      if (shown[i].second) message += " (" + suggestion(shown[i].second) + ")";
    }
    if (count > shown.size()) message += " and " + std::to_string(count - shown.size()) + " more";
    if (!unmatched) return message;
  }
  message += "; a request's fields are ";
  for (size_t i = 0; i < kFields.size(); ++i) {
    if (i) message += ", ";
    message += kFields[i];
  }
  return message + " (your own data can go under \"metadata\")";
}

Request parse_fields(const json& obj, std::string id_json, int64_t line_no,
                     const RequestRules& rules) {
  Request req;
  req.id_json = std::move(id_json);
  req.line = line_no;
  req.sampling = rules.defaults;

  const json* text_prompt = optional_field(obj, Field::kPrompt);
  const json* token_prompt = optional_field(obj, Field::kPromptTokens);
  const json* messages = optional_field(obj, Field::kMessages);
  if (int(text_prompt != nullptr) + int(token_prompt != nullptr) + int(messages != nullptr) > 1) {
    reject(messages ? "give one of \"prompt_tokens\", \"prompt\" and \"messages\", not several"
                    : "give either \"prompt_tokens\" or \"prompt\", not both");
  }
  if (!text_prompt && !token_prompt && !messages) {
    reject(
        "missing the prompt: give \"prompt_tokens\" (token ids) or \"prompt\" (text)"
        " or \"messages\" (a conversation)");
  }
  if (text_prompt) {
    if (!text_prompt->is_string()) {
      reject("\"prompt\" must be a string, not " + describe(*text_prompt));
    }
    req.prompt = encode_text_prompt(text_prompt->get_ref<const std::string&>(), "prompt", rules,
                                    "\"prompt_tokens\"");
  } else if (messages) {
    req.prompt = encode_messages(*messages, "messages", rules);
  } else {
    if (!token_prompt->is_array()) {
      reject("\"prompt_tokens\" must be an array of token ids, not " + describe(*token_prompt));
    }
    if (token_prompt->empty()) reject("\"prompt_tokens\" is empty");
    req.prompt = token_ids(*token_prompt, "prompt_tokens", rules.vocab_size);
  }
  SamplingParams& s = req.sampling;
  fit_context(req.prompt, rules, s);

  constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  if (const json* v = optional_field(obj, Field::kMaxNewTokens)) {
    s.max_new_tokens = int_field(*v, "max_new_tokens", 1, kMaxInt64, "an integer >= 1");
    fit_context(req.prompt, rules, s);
  }
  if (const json* v = optional_field(obj, Field::kTemperature)) {
    temperature_field(*v, "temperature", s);
  }
  if (const json* v = optional_field(obj, Field::kTopK)) {
    s.top_k = int_field(*v, "top_k", 0, kMaxInt64, "an integer >= 0");
  }
  if (const json* v = optional_field(obj, Field::kTopP)) top_p_field(*v, "top_p", s);
  if (const json* v = optional_field(obj, Field::kSeed)) {
    s.seed = seed_field(*v, "seed");
  } else {
    s.seed = derived_seed(rules.job_seed, req.id_json);
  }
  if (const json* v = optional_field(obj, Field::kStop)) stop_field(*v, "stop", rules, s);
  if (const json* v = optional_field(obj, Field::kN)) {
    req.n = static_cast<int>(int_field(*v, "n", 1, kMaxCompletions, "an integer in [1, 128]"));
  }
  if (const json* v = optional_field(obj, Field::kLogprobs)) {
    s.logprobs = bool_field(*v, "logprobs");
  }
  if (const json* v = optional_field(obj, Field::kTopLogprobs)) {
    s.top_logprobs = static_cast<int>(
        int_field(*v, "top_logprobs", 0, kMaxTopLogprobs, "an integer in [0, 20]"));
    // The k best come with the chosen token's own log-probability.
    if (s.top_logprobs > 0) s.logprobs = true;
  }
  if (const json* v = optional_field(obj, Field::kPromptLogprobs)) {
    s.prompt_logprobs = bool_field(*v, "prompt_logprobs");
  }
  if (const json* v = optional_field(obj, Field::kIgnoreEos)) {
    s.ignore_eos = bool_field(*v, "ignore_eos");
  }
  return req;
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

std::span<const std::string_view> request_fields() {
  return kFields;
}

ParsedLine parse_request_line(std::string_view text, int64_t line_no, const RequestRules& rules) {
  ParsedLine out;
  const std::optional<json> parsed = object_line(text, line_no, "a request", out.error);
  if (!parsed) return out;
  const json& obj = *parsed;
  // Whatever else is wrong with the line, its result carries the id and the
  // metadata it gave, so the user can tell which of their requests it was.
  const json* id = find_field(obj, Field::kId);
  const bool usable_id = id && (id->is_string() || id->is_number_integer());
  // Canonical text: the same id written with different escapes is the same id.
  std::string id_json = usable_id ? id->dump() : "";
  const json* metadata = find_field(obj, Field::kMetadata);
  // The input was valid UTF-8 (the parser checked), so nothing is replaced.
  std::string metadata_json =
      metadata ? metadata->dump(-1, ' ', false, json::error_handler_t::replace) : "";
  const auto fail = [&](const std::string& message) {
    out.error = error_result(line_no, std::move(id_json), message);
    out.error->metadata_json = std::move(metadata_json);
  };
  // Fields first, so "promt" is reported as itself rather than as a missing
  // prompt, and a typo never runs as the default.
  if (const std::string unknown = unknown_fields_message(obj); !unknown.empty()) {
    fail(unknown);
  } else if (!id) {
    fail("missing \"id\"");
  } else if (!usable_id) {
    fail("\"id\" must be a string or an integer, not " + describe(*id));
  } else {
    try {
      out.request = parse_fields(obj, id_json, line_no, rules);
      out.request->metadata_json = std::move(metadata_json);
    } catch (const LineError& e) {
      fail(e.message);
    }
  }
  return out;
}

RequestReader::RequestReader(const std::string& path, RequestRules rules)
    : path_(path), rules_(std::move(rules)) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) {
    throw InputError("cannot open input file " + path + ": " + std::strerror(errno));
  }
}

RequestReader::~RequestReader() {
  if (file_) std::fclose(file_);
}

std::optional<ParsedLine> RequestReader::next() {
  if (!file_) return std::nullopt;
  char* buf = nullptr;
  size_t cap = 0;
  std::string line;
  bool got = false;
  for (;;) {
    // getline: lines of any length, embedded NUL bytes kept (they then fail as JSON).
    errno = 0;
    const ssize_t n = ::getline(&buf, &cap, file_);
    if (n < 0) break;
    ++line_no_;
    size_t len = static_cast<size_t>(n);
    if (len > 0 && buf[len - 1] == '\n') --len;
    if (len > 0 && buf[len - 1] == '\r') --len;
    if (is_blank(std::string_view(buf, len))) continue;
    line.assign(buf, len);
    got = true;
    break;
  }
  const int read_errno = errno;
  const bool failed = !got && std::ferror(file_);
  std::free(buf);
  if (failed) {
    throw InputError("cannot read input file " + path_ + ": " +
                     std::strerror(read_errno ? read_errno : EIO));
  }
  if (!got) return std::nullopt;

  const bool openai = rules_.format == InputFormat::kOpenAi;
  ParsedLine parsed = openai ? parse_openai_line(line, line_no_, rules_)
                             : parse_request_line(line, line_no_, rules_);
  // Every usable id is claimed by its first line, even one whose line was bad:
  // that line's error result already carries the id, and an id must appear in
  // the output once (the resume journal is keyed by it).
  const std::string& id_json = parsed.request ? parsed.request->id_json : parsed.error->id_json;
  if (id_json.empty()) return parsed;
  const auto [it, inserted] = first_line_of_id_.try_emplace(id_json, line_no_);
  if (inserted) return parsed;
  Result dup;
  dup.id_json = id_json;
  dup.line = line_no_;
  dup.duplicate_id = true;
  dup.metadata_json = parsed.request ? parsed.request->metadata_json : parsed.error->metadata_json;
  dup.error = "line " + std::to_string(line_no_) + ": duplicate " +
              (openai ? "custom_id " : "id ") + id_json + " (first on line " +
              std::to_string(it->second) + ")";
  ParsedLine out;
  out.error = std::move(dup);
  out.envelope = std::move(parsed.envelope);
  return out;
}

const char* input_format_name(InputFormat f) {
  return f == InputFormat::kOpenAi ? "openai" : "tpinfer";
}

InputFormat detect_input_format(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError("cannot open input file " + path + ": " + std::strerror(errno));
  char* buf = nullptr;
  size_t cap = 0;
  InputFormat format = InputFormat::kTpinfer;
  ssize_t n;
  while ((n = ::getline(&buf, &cap, f)) >= 0) {
    const std::string_view line(buf, static_cast<size_t>(n));
    if (is_blank(line)) continue;
    const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && (j.contains("custom_id") || (j.contains("url") && j.contains("body"))))
      format = InputFormat::kOpenAi;
    break;
  }
  std::free(buf);
  std::fclose(f);
  return format;
}

}  // namespace tpinfer
