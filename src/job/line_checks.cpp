#include "job/line_checks.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "base/philox.hpp"
#include "job/chat_prompt.hpp"
#include "text/chat_template_error.hpp"

namespace tpinfer {

using json = nlohmann::json;

void reject(std::string message) {
  throw LineError{std::move(message)};
}

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

std::string valid_utf8(const std::string& s) {
  const std::string quoted = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  return json::parse(quoted).get<std::string>();
}

// Without nlohmann's "[json.exception...] parse error at line 1, " prefix (our
// line number is the one that matters), a long "last read" cut in the middle
// so a 1 MB line does not make a 1 MB message.
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

namespace {

// An integral value too large for int64/uint64 arrives from nlohmann as a
// float; that one is reported as out of range, not as a wrong type.
bool integral_float(const json& v) {
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
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

void check_in_vocab(const std::vector<int32_t>& ids, const std::string& what,
                    const RequestRules& rules) {
  for (const int32_t id : ids) {
    if (id < 0 || id >= rules.vocab_size) {
      reject(what + " encodes to token " + std::to_string(id) + ", outside the model's vocab of " +
             std::to_string(rules.vocab_size));
    }
  }
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

}  // namespace

int64_t int_field(const json& v, const std::string& name, int64_t lo, int64_t hi,
                  const char* range_text) {
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
    reject("\"" + name + "\" must be an integer, not " + describe(v));
  }
  if (!in_range) {
    reject("\"" + name + "\" must be " + range_text + ", got " + v.dump());
  }
  return value;
}

double number_field(const json& v, const std::string& name) {
  if (!v.is_number()) {
    reject("\"" + name + "\" must be a number, not " + describe(v));
  }
  return v.get<double>();
}

bool bool_field(const json& v, const std::string& name) {
  if (!v.is_boolean()) reject("\"" + name + "\" must be true or false, not " + describe(v));
  return v.get<bool>();
}

uint64_t seed_field(const json& v, const std::string& name) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() || integral_float(v))
    reject("\"" + name + "\" must be an integer in [0, 18446744073709551615], got " + v.dump());
  reject("\"" + name + "\" must be a non-negative integer, not " + describe(v));
}

void temperature_field(const json& v, const std::string& name, SamplingParams& s) {
  const double t = number_field(v, name);
  if (!(t >= 0.0) || !std::isfinite(static_cast<float>(t))) {
    reject("\"" + name + "\" must be a number >= 0, got " + v.dump());
  }
  s.temperature = static_cast<float>(t);
}

void top_p_field(const json& v, const std::string& name, SamplingParams& s) {
  const double p = number_field(v, name);
  if (!(p > 0.0 && p <= 1.0) || static_cast<float>(p) <= 0.0f) {
    reject("\"" + name + "\" must be in (0, 1], got " + v.dump());
  }
  s.top_p = static_cast<float>(p);
}

std::vector<int32_t> token_ids(const json& arr, const std::string& name, int64_t vocab_size) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& t = arr[i];
    const std::string where = name + "[" + std::to_string(i) + "]";
    if (!t.is_number_integer()) {
      reject(where + " must be an integer token id, not " + describe(t));
    }
    ids.push_back(token_id(t, where, vocab_size));
  }
  return ids;
}

void stop_field(const json& v, const std::string& name, const RequestRules& rules,
                SamplingParams& s) {
  const bool has_strings =
      v.is_string() || (v.is_array() && std::any_of(v.begin(), v.end(),
                                                    [](const json& e) { return e.is_string(); }));
  if (has_strings && !rules.tokenizer) {
    reject("stop strings need a tokenizer, and this model has none: give token ids in \"" + name +
           "\"");
  }
  s.stop_token_ids.clear();
  s.stop_strings.clear();
  if (v.is_string()) {
    if (v.get_ref<const std::string&>().empty()) reject("\"" + name + "\" is an empty string");
    s.stop_strings.push_back(v.get<std::string>());
    return;
  }
  if (!v.is_array()) {
    reject("\"" + name + "\" must be a string or an array of strings and token ids, not " +
           describe(v));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const json& e = v[i];
    const std::string where = name + "[" + std::to_string(i) + "]";
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

std::vector<int32_t> encode_text_prompt(const std::string& text, const std::string& name,
                                        const RequestRules& rules, const std::string& instead) {
  if (!rules.tokenizer) {
    reject("\"" + name + "\" is text, but this model has no tokenizer: give " + instead);
  }
  std::vector<int32_t> ids = rules.tokenizer->encode(text, true);
  if (ids.empty()) reject("\"" + name + "\" is empty");
  check_in_vocab(ids, "\"" + name + "\"", rules);
  return ids;
}

std::vector<int32_t> encode_messages(const json& messages, const std::string& name,
                                     const RequestRules& rules) {
  const json checked = ChatPrompt::checked_messages(messages, name);
  if (!rules.chat)
    reject(rules.no_chat_reason.empty() ? "\"messages\" need a chat template"
                                        : rules.no_chat_reason);
  std::vector<int32_t> ids;
  try {
    ids = rules.chat->encode(checked);
  } catch (const ChatTemplateRenderError& e) {
    reject("the chat template rejects \"" + name + "\": " + valid_utf8(e.what()));
  }
  if (ids.empty()) reject("\"" + name + "\" render to an empty prompt");
  check_in_vocab(ids, "\"" + name + "\"", rules);
  return ids;
}

void fit_context(const std::vector<int32_t>& prompt, const RequestRules& rules, SamplingParams& s) {
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len > rules.max_context - 1) {
    reject("prompt has " + std::to_string(prompt_len) + " tokens; the model's context is " +
           std::to_string(rules.max_context) + " (a prompt may have at most " +
           std::to_string(std::max<int64_t>(rules.max_context - 1, 0)) + ")");
  }
  // The prompt already fits, so at least one new token always does.
  s.max_new_tokens = std::min(s.max_new_tokens, rules.max_context - prompt_len);
}

// From the id's canonical JSON text, so the seed depends on neither the line's
// position nor its layout (spacing, key order, string escapes).
uint64_t derived_seed(uint64_t job_seed, const std::string& id_json) {
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(job_seed >> (8 * i));
  const uint64_t h = fnv1a64(id_json.data(), id_json.size(), fnv1a64(le, sizeof le));
  return mix64(h);
}

Result error_result(int64_t line_no, std::string id_json, const std::string& message) {
  Result r;
  r.id_json = std::move(id_json);
  r.line = line_no;
  r.error = "line " + std::to_string(line_no) + ": " + message;
  return r;
}

std::optional<nlohmann::json> object_line(std::string_view text, int64_t line_no,
                                          const std::string& a_what, std::optional<Result>& error) {
  nlohmann::json obj;
  try {
    obj = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // Not only parse_error: a number too large for a double is out_of_range.
    error = error_result(line_no, "", "not valid JSON (" + short_parse_reason(e) + ")");
    return std::nullopt;
  }
  if (!obj.is_object()) {
    error = error_result(line_no, "", a_what + " must be a JSON object, not " + describe(obj));
    return std::nullopt;
  }
  return obj;
}

}  // namespace tpinfer
