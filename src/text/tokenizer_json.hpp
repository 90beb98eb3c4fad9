#pragma once
// Reading tokenizer.json: field accessors that fail with one line naming the
// field, and the one walker every component list (normalizer, pre-tokenizer,
// decoder, post-processor) goes through. Internal to src/text.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace tpinfer::tokenizer_detail {

using json = nlohmann::json;

// Throws ModelError("tokenizer.json: " + msg).
[[noreturn]] void bad(const std::string& msg);

std::string field_str(const json& j, const char* key, const std::string& where);
std::string opt_str(const json& j, const char* key);  // "" when absent or not a string
bool opt_bool(const json& j, const char* key, bool absent = false);
std::string type_of(const json& j, const std::string& where);  // j["type"], j an object

// Calls f(item, where) for each component of `node`: the items of a
// {"type": "Sequence", list_key: [...]} (nested Sequences flattened, as applying
// them in order is the same), or `node` itself. A null node has none.
void for_each_component(const json& node, const std::string& where, const char* list_key,
                        const std::function<void(const json&, const std::string&)>& f);

}  // namespace tpinfer::tokenizer_detail
