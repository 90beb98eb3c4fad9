#pragma once
// The values a chat template computes with, and the Python behaviour jinja2
// gives them: str() and repr() as Python prints them, truthiness, ==, <, and
// json.dumps as transformers' tojson filter calls it. Lists and dicts are
// shared (a sandboxed template cannot mutate them; a namespace is the one
// mutable object and is shared on purpose, as in jinja2).
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer::jinja {

struct Value;
using List = std::vector<Value>;
// Insertion-ordered, string keys (JSON objects and templates' dict literals).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value v);
};
struct Macro;
struct LoopState;

struct Value {
  enum class Kind : uint8_t {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Dict,
    Namespace,  // namespace(): a Dict whose attributes `set ns.x` may assign
    Macro,      // a {% macro %} (or a call block's caller)
    Loop,       // the `loop` variable of a for loop
    Global,     // a built-in global function (s names it)
  };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined the name that was missing (for errors)
  std::shared_ptr<const List> list;
  std::shared_ptr<Dict> dict;  // Dict, Namespace
  std::shared_ptr<const Macro> macro;
  std::shared_ptr<const LoopState> loop;

  Value() = default;
  static Value of(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
  static Value undefined(std::string name = {}) {
    Value v;
    v.s = std::move(name);
    return v;
  }
  static Value none() { return of(Kind::None); }
  static Value boolean(bool x) {
    Value v = of(Kind::Bool);
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v = of(Kind::Int);
    v.i = x;
    return v;
  }
  static Value number(double x) {
    Value v = of(Kind::Float);
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v = of(Kind::String);
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List x) {
    Value v = of(Kind::List);
    v.list = std::make_shared<const List>(std::move(x));
    return v;
  }
  static Value make_dict(Dict x) {
    Value v = of(Kind::Dict);
    v.dict = std::make_shared<Dict>(std::move(x));
    return v;
  }
  static Value from_json(const nlohmann::json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_mapping() const { return kind == Kind::Dict; }
  double as_double() const { return kind == Kind::Float ? f : kind == Kind::Bool ? b : double(i); }
  bool truthy() const;
};

// Python's type name of a value, as error messages print it ('str', 'list', ...).
const char* type_name(const Value& v);
// str(v) as jinja2 renders {{ v }} (Undefined renders empty).
std::string to_str(const Value& v);
void append_str(std::string& out, const Value& v);
// repr(v) (list and dict elements print this way).
std::string repr(const Value& v);
// Python's repr of a float: shortest round-trip digits, '1e+16', '1.0'.
std::string float_repr(double d);
bool equal(const Value& a, const Value& b);
// a < b as Python orders numbers, strings and lists; throws for other types.
bool less(const Value& a, const Value& b);

struct JsonOptions {
  bool ensure_ascii = false;
  int indent = -1;         // < 0: none
  std::string indent_str;  // when the template passes a string indent
  std::string item_sep;    // empty: Python's default for the indent
  std::string key_sep;
  bool separators_set = false;
  bool sort_keys = false;
};
// json.dumps(v, ...) with Python's formatting; throws for what it cannot encode.
std::string to_json(const Value& v, const JsonOptions& opt);

// UTF-8 helpers: Python indexes strings by code point.
bool is_ascii(std::string_view s);
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
size_t utf8_length(std::string_view s);
// Python's str.isspace() for one code point.
bool py_isspace(char32_t c);

}  // namespace tpinfer::jinja
