// Field accessors for tokenizer.json and the Sequence walker.
#include "text/tokenizer_json.hpp"

#include "base/error.hpp"

namespace tpinfer::tokenizer_detail {

void bad(const std::string& msg) {
  throw ModelError("tokenizer.json: " + msg);
}

std::string field_str(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) bad(where + "." + key + ": missing or not a string");
  return it->get<std::string>();
}

std::string opt_str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool opt_bool(const json& j, const char* key, bool absent) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absent;
  return it->is_boolean() && it->get<bool>();
}

std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object()) bad(where + ": not an object");
  return field_str(j, "type", where);
}

void for_each_component(const json& node, const std::string& where, const char* list_key,
                        const std::function<void(const json&, const std::string&)>& f) {
  if (node.is_null()) return;
  if (type_of(node, where) != "Sequence") {
    f(node, where);
    return;
  }
  auto it = node.find(list_key);
  if (it == node.end() || !it->is_array()) bad(where + "." + list_key + ": missing");
  for (size_t i = 0; i < it->size(); ++i)
    for_each_component((*it)[i], where + "." + list_key + "[" + std::to_string(i) + "]", list_key,
                       f);
}

}  // namespace tpinfer::tokenizer_detail
