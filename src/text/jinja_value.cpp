#include "text/jinja_value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "text/chat_template_error.hpp"

namespace tpinfer::jinja {

namespace {
[[noreturn]] void fail(const std::string& what) {
  throw ChatTemplateRenderError(what);
}
}  // namespace

const Value* Dict::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}
Value* Dict::find(std::string_view key) {
  for (auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}
void Dict::set(std::string key, Value v) {
  if (Value* p = find(key)) {
    *p = std::move(v);
    return;
  }
  items.emplace_back(std::move(key), std::move(v));
}

Value Value::from_json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return none();
    case nlohmann::json::value_t::boolean:
      return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) fail("integer " + std::to_string(u) + " is too large");
      return integer(int64_t(u));
    }
    case nlohmann::json::value_t::number_float:
      return number(j.get<double>());
    case nlohmann::json::value_t::string:
      return string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(from_json(e));
      return make_list(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      d.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(it.key(), from_json(*it));
      return make_dict(std::move(d));
    }
    default:
      fail("unsupported JSON value (binary or discarded)");
  }
}

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return b;
    case Kind::Int:
      return i != 0;
    case Kind::Float:
      return f != 0;
    case Kind::String:
      return !s.empty();
    case Kind::List:
      return !list->empty();
    case Kind::Dict:
      return !dict->items.empty();
    default:
      return true;
  }
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return "Undefined";
    case Value::Kind::None:
      return "NoneType";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Dict:
      return "dict";
    case Value::Kind::Namespace:
      return "Namespace";
    case Value::Kind::Macro:
      return "Macro";
    case Value::Kind::Loop:
      return "LoopContext";
    case Value::Kind::Global:
      return "builtin_function_or_method";
  }
  return "?";
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, r.ptr - buf);
  std::string out;
  if (sci[0] == '-') {
    out = "-";
    sci.remove_prefix(1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  const int exp = std::stoi(std::string(sci.substr(e_pos + 1)));
  const int n = int(digits.size());
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      if (n <= exp + 1) {
        out += digits + std::string(exp + 1 - n, '0') + ".0";
      } else {
        out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
      }
    } else {
      out += "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return out;
}

namespace {

void append_repr_string(std::string& out, const std::string& s) {
  const char q =
      (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  out += q;
  const std::u32string u = utf8_decode(s);
  for (char32_t c : u) {
    if (c == char32_t(q) || c == U'\\') {
      out += '\\';
      out += char(c);
    } else if (c == U'\n') {
      out += "\\n";
    } else if (c == U'\r') {
      out += "\\r";
    } else if (c == U'\t') {
      out += "\\t";
    } else if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) {
      // Python prints non-printable Latin-1 code points as \xNN.
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", unsigned(c));
      out += b;
    } else {
      utf8_append(out, c);
    }
  }
  out += q;
}

void append_repr(std::string& out, const Value& v) {
  if (v.kind == Value::Kind::String) {
    append_repr_string(out, v.s);
  } else if (v.kind == Value::Kind::Undefined) {
    // Python's repr of jinja2's Undefined.
    out += "Undefined";
  } else {
    append_str(out, v);
  }
}

}  // namespace

void append_str(std::string& out, const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return;
    case Value::Kind::None:
      out += "None";
      return;
    case Value::Kind::Bool:
      out += v.b ? "True" : "False";
      return;
    case Value::Kind::Int: {
      char b[24];
      auto r = std::to_chars(b, b + sizeof b, v.i);
      out.append(b, r.ptr);
      return;
    }
    case Value::Kind::Float:
      out += float_repr(v.f);
      return;
    case Value::Kind::String:
      out += v.s;
      return;
    case Value::Kind::List: {
      out += '[';
      bool first = true;
      for (const Value& e : *v.list) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, e);
      }
      out += ']';
      return;
    }
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
      if (v.kind == Value::Kind::Namespace) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.dict->items) {
        if (!first) out += ", ";
        first = false;
        append_repr_string(out, k);
        out += ": ";
        append_repr(out, e);
      }
      out += '}';
      if (v.kind == Value::Kind::Namespace) out += '>';
      return;
    }
    default:
      // A macro, loop or function printed: jinja2 prints a Python object
      // address, which nothing can match.
      fail(std::string("cannot print a ") + type_name(v) + " object");
  }
}

std::string to_str(const Value& v) {
  if (v.kind == Value::Kind::String) return v.s;
  std::string out;
  append_str(out, v);
  return out;
}

std::string repr(const Value& v) {
  std::string out;
  append_repr(out, v);
  return out;
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::Kind::Float && b.kind != Value::Kind::Float)
      return (a.kind == Value::Kind::Bool ? a.b : a.i) == (b.kind == Value::Kind::Bool ? b.b : b.i);
    return a.as_double() == b.as_double();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      return a.s == b.s;
    case Value::Kind::List: {
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    }
    case Value::Kind::Dict: {
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* o = b.dict->find(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
    }
    case Value::Kind::Namespace:
      return a.dict == b.dict;
    case Value::Kind::Macro:
      return a.macro == b.macro;
    case Value::Kind::Loop:
      return a.loop == b.loop;
    case Value::Kind::Global:
      return a.s == b.s;
    default:
      return false;
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::Kind::Float && b.kind != Value::Kind::Float)
      return (a.kind == Value::Kind::Bool ? a.b : a.i) < (b.kind == Value::Kind::Bool ? b.b : b.i);
    return a.as_double() < b.as_double();
  }
  if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) return a.s < b.s;
  if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
    const List &x = *a.list, &y = *b.list;
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!equal(x[k], y[k])) return less(x[k], y[k]);
    }
    return x.size() < y.size();
  }
  fail(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" +
       type_name(b) + "'");
}

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t k = 0; k < s.size(); ++k) {
    const unsigned char c = s[k];
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else if (c >= 0x80 && ensure_ascii) {
      size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      const std::u32string u = utf8_decode(s.substr(k, len));
      k += len - 1;
      for (char32_t cp : u) {
        char b[16];
        if (cp >= 0x10000) {
          cp -= 0x10000;
          std::snprintf(b, sizeof b, "\\u%04x\\u%04x", unsigned(0xd800 + (cp >> 10)),
                        unsigned(0xdc00 + (cp & 0x3ff)));
        } else {
          std::snprintf(b, sizeof b, "\\u%04x", unsigned(cp));
        }
        out += b;
      }
    } else {
      out += char(c);
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& v, const JsonOptions& opt, int depth) {
  const bool indented = opt.indent >= 0 || !opt.indent_str.empty();
  const std::string& item_sep = opt.item_sep;
  const std::string& key_sep = opt.key_sep;
  auto newline = [&](int d) {
    out += '\n';
    for (int k = 0; k < d; ++k) {
      if (!opt.indent_str.empty())
        out += opt.indent_str;
      else
        out.append(size_t(opt.indent), ' ');
    }
  };
  switch (v.kind) {
    case Value::Kind::None:
      out += "null";
      return;
    case Value::Kind::Bool:
      out += v.b ? "true" : "false";
      return;
    case Value::Kind::Int:
      append_str(out, v);
      return;
    case Value::Kind::Float:
      if (std::isnan(v.f))
        out += "NaN";
      else if (std::isinf(v.f))
        out += v.f < 0 ? "-Infinity" : "Infinity";
      else
        out += float_repr(v.f);
      return;
    case Value::Kind::String:
      json_string(out, v.s, opt.ensure_ascii);
      return;
    case Value::Kind::List: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const Value& e : *v.list) {
        if (!first) out += item_sep;
        first = false;
        if (indented) newline(depth + 1);
        json_value(out, e, opt, depth + 1);
      }
      if (indented) newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (opt.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += item_sep;
        first = false;
        if (indented) newline(depth + 1);
        json_string(out, kv->first, opt.ensure_ascii);
        out += key_sep;
        json_value(out, kv->second, opt, depth + 1);
      }
      if (indented) newline(depth);
      out += '}';
      return;
    }
    default:
      fail(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& opt_in) {
  JsonOptions opt = opt_in;
  if (!opt.separators_set) {
    const bool indented = opt.indent >= 0 || !opt.indent_str.empty();
    opt.item_sep = indented ? "," : ", ";
    opt.key_sep = ": ";
  }
  std::string out;
  json_value(out, v, opt, 0);
  return out;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t k = 0; k < s.size();) {
    const unsigned char c = s[k];
    char32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c >> 5) == 6) {
      cp = c & 0x1f;
      len = 2;
    } else if ((c >> 4) == 14) {
      cp = c & 0x0f;
      len = 3;
    } else if ((c >> 3) == 30) {
      cp = c & 0x07;
      len = 4;
    } else {
      cp = 0xfffd;
      len = 1;
    }
    if (k + len > s.size()) {
      cp = 0xfffd;
      len = s.size() - k;
    } else
      for (size_t m = 1; m < len; ++m) cp = (cp << 6) | (s[k + m] & 0x3f);
    out += cp;
    k += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xc0 | (c >> 6));
    out += char(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += char(0xe0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3f));
    out += char(0x80 | (c & 0x3f));
  } else {
    out += char(0xf0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3f));
    out += char(0x80 | ((c >> 6) & 0x3f));
    out += char(0x80 | (c & 0x3f));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

}  // namespace tpinfer::jinja
