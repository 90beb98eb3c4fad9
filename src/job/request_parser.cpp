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
#include "base/philox.hpp"
#include "job/jsonl.hpp"

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
  kMaxNewTokens,
  kTemperature,
  kTopK,
  kTopP,
  kSeed,
  kStop,
  kLogprobs,
  kIgnoreEos,
  kMetadata,
  kCount
};

constexpr std::array<std::string_view, static_cast<size_t>(Field::kCount)> kFields = {
    "id",    "prompt", "prompt_tokens", "max_new_tokens", "temperature", "top_k",
    "top_p", "seed",   "stop",          "logprobs",       "ignore_eos",  "metadata"};
static_assert(std::none_of(kFields.begin(), kFields.end(),
                           [](std::string_view f) { return f.empty(); }),
              "every Field needs its name in kFields");

// The literals above end in NUL, so data() is a C string.
const char* name_of(Field f) {
  return kFields[static_cast<size_t>(f)].data();
}

// Thrown inside the parser and turned into an error result at its top level, so
// each check is one line and the first rule broken is the one reported.
struct LineError {
  std::string message;
};

[[noreturn]] void reject(std::string message) {
  throw LineError{std::move(message)};
}

// "an integer", "a string", ...: never the value itself, which may be huge or
// deeply nested (dumping it could take the stack or flood the output).
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a floating-point number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return std::string("a ") + v.type_name();
  }
}

// Messages end up inside JSON output lines, which must be valid UTF-8; text
// copied from a bad input line (nlohmann's "last read") may not be.
std::string valid_utf8(const std::string& s) {
  const std::string quoted = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  return json::parse(quoted).get<std::string>();
}

// nlohmann's message without its "[json.exception...] parse error at line 1, "
// prefix (our line number is the one that matters), with a long "last read"
// cut in the middle so a 1 MB line does not make a 1 MB message.
std::string short_parse_reason(const json::exception& e) {
  std::string reason = e.what();
  if (const auto close = reason.find("] ");
      reason.rfind("[json.exception", 0) == 0 && close != std::string::npos) {
    reason.erase(0, close + 2);
  }
  if (const auto col = reason.find("column ");
      reason.rfind("parse error at line ", 0) == 0 && col != std::string::npos) {
    reason.erase(0, col);
  }
  constexpr size_t kHead = 160, kTail = 80;
  if (reason.size() > kHead + kTail + 5) {
    reason = reason.substr(0, kHead) + " ... " + reason.substr(reason.size() - kTail);
  }
  return valid_utf8(reason);
}

// Integer fields must be JSON integers: 5.0 is rejected rather than guessed at.
// An integral value too large for int64/uint64 arrives from nlohmann as a float;
// that one is reported as out of range, not as a wrong type.
bool integral_float(const json& v) {
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

int64_t int_field(const json& v, const char* name, int64_t lo, int64_t hi, const char* range_text) {
  bool in_range = false;
  int64_t value = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo;
    value = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    value = v.get<int64_t>();
    in_range = value >= lo && value <= hi;
  } else if (!integral_float(v)) {
    reject(std::string("\"") + name + "\" must be an integer, not " + describe(v));
  }
  if (!in_range) {
    reject(std::string("\"") + name + "\" must be " + range_text + ", got " + v.dump());
  }
  return value;
}

double number_field(const json& v, const char* name) {
  if (!v.is_number()) {
    reject(std::string("\"") + name + "\" must be a number, not " + describe(v));
  }
  return v.get<double>();
}

// One token id (a JSON integer, checked to be one) in [0, vocab).
int32_t token_id(const json& t, const std::string& where, int64_t vocab_size) {
  const int64_t limit = std::min<int64_t>(vocab_size, std::numeric_limits<int32_t>::max());
  const bool in_range = t.is_number_unsigned() ? t.get<uint64_t>() < static_cast<uint64_t>(limit)
                                               : t.get<int64_t>() >= 0 && t.get<int64_t>() < limit;
  if (!in_range) {
    reject(where + " = " + t.dump() + " is outside the vocabulary [0, " +
           std::to_string(vocab_size) + ")");
  }
  return static_cast<int32_t>(t.get<int64_t>());
}

// Token ids for "prompt_tokens": every element an integer in [0, vocab).
std::vector<int32_t> token_ids(const json& arr, const char* name, int64_t vocab_size) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& t = arr[i];
    const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
    if (!t.is_number_integer()) {
      reject(where + " must be an integer token id, not " + describe(t));
    }
    ids.push_back(token_id(t, where, vocab_size));
  }
  return ids;
}

// "stop": a string, or an array whose elements are token ids (integers) and
// stop strings (non-empty strings; they need a tokenizer).
void stop_field(const json& v, const RequestRules& rules, SamplingParams& s) {
  const bool has_strings =
      v.is_string() || (v.is_array() && std::any_of(v.begin(), v.end(),
                                                    [](const json& e) { return e.is_string(); }));
  if (has_strings && !rules.tokenizer) {
    reject("stop strings need a tokenizer, and this model has none: give token ids in \"stop\"");
  }
  s.stop_token_ids.clear();
  s.stop_strings.clear();
  if (v.is_string()) {
    if (v.get_ref<const std::string&>().empty()) reject("\"stop\" is an empty string");
    s.stop_strings.push_back(v.get<std::string>());
    return;
  }
  if (!v.is_array()) {
    reject("\"stop\" must be a string or an array of strings and token ids, not " + describe(v));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const json& e = v[i];
    const std::string where = "stop[" + std::to_string(i) + "]";
    if (e.is_string()) {
      if (e.get_ref<const std::string&>().empty()) reject(where + " is an empty string");
      s.stop_strings.push_back(e.get<std::string>());
    } else if (e.is_number_integer()) {
      s.stop_token_ids.push_back(token_id(e, where, rules.vocab_size));
    } else {
      reject(where + " must be a string or an integer token id, not " + describe(e));
    }
  }
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

// splitmix64's finaliser: FNV-1a alone leaves the low bits of similar ids
// correlated, and the seed keys Philox directly.
uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// From the id's canonical JSON text, so the seed depends on neither the line's
// position nor its layout (spacing, key order, string escapes).
uint64_t derived_seed(uint64_t job_seed, const std::string& id_json) {
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(job_seed >> (8 * i));
  const uint64_t h = fnv1a64(id_json.data(), id_json.size(), fnv1a64(le, sizeof le));
  return mix64(h);
}

Request parse_fields(const json& obj, std::string id_json, int64_t line_no,
                     const RequestRules& rules) {
  Request req;
  req.id_json = std::move(id_json);
  req.line = line_no;
  req.sampling = rules.defaults;

  const json* text_prompt = optional_field(obj, Field::kPrompt);
  const json* token_prompt = optional_field(obj, Field::kPromptTokens);
  if (text_prompt && token_prompt) {
    reject("give either \"prompt_tokens\" or \"prompt\", not both");
  }
  if (!text_prompt && !token_prompt) {
    reject("missing the prompt: give \"prompt_tokens\" (token ids) or \"prompt\" (text)");
  }
  if (text_prompt) {
    if (!text_prompt->is_string()) {
      reject("\"prompt\" must be a string, not " + describe(*text_prompt));
    }
    if (!rules.tokenizer) {
      reject("\"prompt\" is text, but this model has no tokenizer: give \"prompt_tokens\"");
    }
    req.prompt = rules.tokenizer->encode(text_prompt->get_ref<const std::string&>(), true);
    if (req.prompt.empty()) reject("\"prompt\" is empty");
    for (const int32_t id : req.prompt) {
      if (id < 0 || id >= rules.vocab_size) {
        reject("\"prompt\" encodes to token " + std::to_string(id) +
               ", outside the model's vocab of " + std::to_string(rules.vocab_size));
      }
    }
  } else {
    if (!token_prompt->is_array()) {
      reject("\"prompt_tokens\" must be an array of token ids, not " + describe(*token_prompt));
    }
    if (token_prompt->empty()) reject("\"prompt_tokens\" is empty");
    req.prompt = token_ids(*token_prompt, "prompt_tokens", rules.vocab_size);
  }

  const int64_t prompt_len = static_cast<int64_t>(req.prompt.size());
  if (prompt_len > rules.max_context - 1) {
    reject("prompt has " + std::to_string(prompt_len) + " tokens; the model's context is " +
           std::to_string(rules.max_context) + " (a prompt may have at most " +
           std::to_string(std::max<int64_t>(rules.max_context - 1, 0)) + ")");
  }

  SamplingParams& s = req.sampling;
  constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  if (const json* v = optional_field(obj, Field::kMaxNewTokens)) {
    s.max_new_tokens = int_field(*v, "max_new_tokens", 1, kMaxInt64, "an integer >= 1");
  }
  // The prompt already fits, so at least one new token always does.
  s.max_new_tokens = std::min(s.max_new_tokens, rules.max_context - prompt_len);

  if (const json* v = optional_field(obj, Field::kTemperature)) {
    const double t = number_field(*v, "temperature");
    if (!(t >= 0.0) || !std::isfinite(static_cast<float>(t))) {
      reject("\"temperature\" must be a number >= 0, got " + v->dump());
    }
    s.temperature = static_cast<float>(t);
  }
  if (const json* v = optional_field(obj, Field::kTopK)) {
    s.top_k = int_field(*v, "top_k", 0, kMaxInt64, "an integer >= 0");
  }
  if (const json* v = optional_field(obj, Field::kTopP)) {
    const double p = number_field(*v, "top_p");
    if (!(p > 0.0 && p <= 1.0) || static_cast<float>(p) <= 0.0f) {
      reject("\"top_p\" must be in (0, 1], got " + v->dump());
    }
    s.top_p = static_cast<float>(p);
  }
  if (const json* v = optional_field(obj, Field::kSeed)) {
    if (v->is_number_unsigned()) {
      s.seed = v->get<uint64_t>();
    } else if (v->is_number_integer() || integral_float(*v)) {
      reject("\"seed\" must be an integer in [0, 18446744073709551615], got " + v->dump());
    } else {
      reject("\"seed\" must be a non-negative integer, not " + describe(*v));
    }
  } else {
    s.seed = derived_seed(rules.job_seed, req.id_json);
  }
  if (const json* v = optional_field(obj, Field::kStop)) stop_field(*v, rules, s);
  if (const json* v = optional_field(obj, Field::kLogprobs)) {
    if (!v->is_boolean()) {
      reject("\"logprobs\" must be true or false, not " + describe(*v));
    }
    s.logprobs = v->get<bool>();
  }
  if (const json* v = optional_field(obj, Field::kIgnoreEos)) {
    if (!v->is_boolean()) {
      reject("\"ignore_eos\" must be true or false, not " + describe(*v));
    }
    s.ignore_eos = v->get<bool>();
  }
  return req;
}

Result error_result(int64_t line_no, std::string id_json, const std::string& message) {
  Result r;
  r.id_json = std::move(id_json);
  r.line = line_no;
  r.error = "line " + std::to_string(line_no) + ": " + message;
  return r;
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
  json obj;
  try {
    obj = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // Not only parse_error: a number too large for a double is out_of_range.
    out.error = error_result(line_no, "", "not valid JSON (" + short_parse_reason(e) + ")");
    return out;
  }
  if (!obj.is_object()) {
    out.error = error_result(line_no, "", "a request must be a JSON object, not " + describe(obj));
    return out;
  }
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

  ParsedLine parsed = parse_request_line(line, line_no_, rules_);
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
  dup.error = "line " + std::to_string(line_no_) + ": duplicate id " + id_json +
              " (first on line " + std::to_string(it->second) + ")";
  ParsedLine out;
  out.error = std::move(dup);
  return out;
}

}  // namespace tpinfer
