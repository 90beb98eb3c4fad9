// jinja2's filters and tests, Python's str/dict/list methods, and the globals
// of transformers' chat-template environment, as far as chat templates use
// them. Case mapping (upper, lower, title, capitalize) is ASCII-only: Python
// would also map non-ASCII letters.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <set>
#include <string>
#include <string_view>

#include "text/chat_template_error.hpp"
#include "text/jinja_eval.hpp"

namespace tpinfer::jinja {

namespace {

const std::set<std::string> kFilters = {
    "trim",       "length",  "count",   "tojson", "upper",  "lower",     "capitalize", "title",
    "replace",    "join",    "default", "d",      "first",  "last",      "items",      "selectattr",
    "rejectattr", "select",  "reject",  "map",    "string", "int",       "float",      "list",
    "unique",     "reverse", "abs",     "round",  "indent", "wordcount", "sort",       "sum",
    "safe",       "escape",  "e",       "min",    "max"};
const std::set<std::string> kTests = {
    "defined",  "undefined", "none",    "string",      "mapping",  "sequence",
    "iterable", "number",    "integer", "float",       "boolean",  "true",
    "false",    "odd",       "even",    "divisibleby", "eq",       "equalto",
    "==",       "ne",        "!=",      "lt",          "lessthan", "<",
    "le",       "<=",        "gt",      "greaterthan", ">",        "ge",
    ">=",       "in",        "sameas",  "callable",    "lower",    "upper"};
// Methods of str, dict and list (and loop.cycle) the renderer implements.
const std::set<std::string> kMethods = {
    "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit", "replace", "upper",
    "lower", "title", "capitalize", "find", "rfind", "index", "count", "format", "join",
    "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "items", "keys",
    "values", "get", "cycle",
    // Mutators: the sandbox refuses them when called, as jinja2's
    // ImmutableSandboxedEnvironment does.
    "append", "extend", "insert", "pop", "remove", "update", "setdefault", "clear", "sort",
    "reverse", "popitem", "add", "discard"};
const std::set<std::string> kMutators = {"append",  "extend",     "insert", "pop",  "remove",
                                         "update",  "setdefault", "clear",  "sort", "reverse",
                                         "popitem", "add",        "discard"};
const std::set<std::string> kGlobals = {"raise_exception", "strftime_now", "namespace", "range",
                                        "dict"};

// Binds positional and keyword arguments to a Python signature.
std::vector<std::optional<Value>> bind(const std::string& fn, Args& a,
                                       std::initializer_list<const char*> names) {
  std::vector<std::optional<Value>> out(names.size());
  if (a.pos.size() > names.size())
    render_fail(fn + "() takes at most " + std::to_string(names.size()) + " arguments (" +
                std::to_string(a.pos.size()) + " given)");
  for (size_t k = 0; k < a.pos.size(); ++k) out[k] = std::move(a.pos[k]);
  for (auto& [key, v] : a.kw) {
    size_t k = 0;
    for (const char* n : names) {
      if (key == n) break;
      ++k;
    }
    if (k == names.size()) render_fail(fn + "() got an unexpected keyword argument '" + key + "'");
    if (out[k]) render_fail(fn + "() got multiple values for argument '" + key + "'");
    out[k] = std::move(v);
  }
  return out;
}

bool given(const std::optional<Value>& v) {
  return v && !v->is_none();
}

int64_t to_int(const std::optional<Value>& v, int64_t dflt, const std::string& what) {
  if (!given(v)) return dflt;
  if (v->kind == Value::Kind::Int) return v->i;
  if (v->kind == Value::Kind::Bool) return v->b;
  render_fail(what + " must be an integer, not " + type_name(*v));
}

// `what` by value: GCC 13 warns of a dangling reference when a reference
// parameter is bound to a temporary string in a function returning one.
const std::string& need_str(const Value& v, std::string_view what) {
  if (v.is_undefined()) undefined_fail(v);
  if (!v.is_string()) render_fail(std::string(what) + " must be str, not " + type_name(v));
  return v.s;
}

std::string ascii_map(std::string s, int (*f)(int)) {
  for (char& c : s)
    if (!(c & 0x80)) c = char(f((unsigned char)c));
  return s;
}

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    const bool alpha = !(c & 0x80) && isalpha((unsigned char)c);
    if (alpha) c = char(prev_cased ? tolower((unsigned char)c) : toupper((unsigned char)c));
    prev_cased = alpha;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = ascii_map(s, tolower);
  if (!out.empty() && !(out[0] & 0x80)) out[0] = char(toupper((unsigned char)out[0]));
  return out;
}

// jinja2's title filter: capitalises after whitespace, '-', '(', '{', '[', '<'.
std::string jinja_title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    const bool sep =
        isspace((unsigned char)c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      start = true;
      continue;
    }
    if (!(c & 0x80)) c = char(start ? toupper((unsigned char)c) : tolower((unsigned char)c));
    start = false;
  }
  return out;
}

std::string py_strip(const std::string& s, const std::optional<Value>& chars, bool left,
                     bool right) {
  std::u32string set;
  const bool ws = !given(chars);
  if (!ws) set = utf8_decode(need_str(*chars, "strip arg"));
  auto strip_it = [&](char32_t c) {
    return ws ? py_isspace(c) : set.find(c) != std::u32string::npos;
  };
  if (is_ascii(s) && (ws || is_ascii(chars->s))) {
    size_t b = 0, e = s.size();
    if (left)
      while (b < e && strip_it(char32_t((unsigned char)s[b]))) ++b;
    if (right)
      while (e > b && strip_it(char32_t((unsigned char)s[e - 1]))) --e;
    return s.substr(b, e - b);
  }
  const std::u32string u = utf8_decode(s);
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

List py_split(const std::string& s, const std::optional<Value>& sep_v, int64_t maxsplit,
              bool from_right) {
  List out;
  if (!given(sep_v)) {
    // Runs of whitespace, ends ignored.
    const std::u32string u = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t k = 0;
    while (k < u.size()) {
      while (k < u.size() && py_isspace(u[k])) ++k;
      if (k >= u.size()) break;
      size_t e = k;
      while (e < u.size() && !py_isspace(u[e])) ++e;
      words.emplace_back(k, e);
      k = e;
    }
    if (maxsplit >= 0 && int64_t(words.size()) > maxsplit + 1) {
      if (!from_right) {
        auto& last = words[size_t(maxsplit)];
        size_t e = u.size();
        while (e > last.first && py_isspace(u[e - 1])) --e;
        last.second = e;
        words.resize(size_t(maxsplit) + 1);
      } else {
        const size_t first = words.size() - size_t(maxsplit) - 1;
        size_t b = 0;
        while (b < u.size() && py_isspace(u[b])) ++b;
        words[first].first = b;
        words.erase(words.begin(), words.begin() + long(first));
      }
    }
    for (auto [b, e] : words)
      out.push_back(Value::string(utf8_encode(std::u32string_view(u).substr(b, e - b))));
    return out;
  }
  const std::string& sep = need_str(*sep_v, "separator");
  if (sep.empty()) render_fail("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t pos = 0;
    int64_t n = 0;
    for (;;) {
      const size_t f = (maxsplit >= 0 && n >= maxsplit) ? std::string::npos : s.find(sep, pos);
      if (f == std::string::npos) {
        parts.push_back(s.substr(pos));
        break;
      }
      parts.push_back(s.substr(pos, f - pos));
      pos = f + sep.size();
      ++n;
    }
  } else {
    size_t end = s.size();
    int64_t n = 0;
    for (;;) {
      size_t f = std::string::npos;
      if (!(maxsplit >= 0 && n >= maxsplit) && end >= sep.size())
        f = s.rfind(sep, end - sep.size());
      if (f == std::string::npos) {
        parts.push_back(s.substr(0, end));
        break;
      }
      parts.push_back(s.substr(f + sep.size(), end - f - sep.size()));
      end = f;
      ++n;
    }
    std::reverse(parts.begin(), parts.end());
  }
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep,
                       int64_t count) {
  std::string out;
  if (old.empty()) {
    const std::u32string u = utf8_decode(s);
    int64_t n = 0;
    for (size_t k = 0; k <= u.size(); ++k) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (k < u.size()) utf8_append(out, u[k]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  for (;;) {
    const size_t f = (count >= 0 && n >= count) ? std::string::npos : s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += rep;
    pos = f + old.size();
    ++n;
  }
  out.append(s, pos);
  return out;
}

// Python's str.splitlines() (no keepends).
List py_splitlines(const std::string& s) {
  List out;
  const std::u32string u = utf8_decode(s);
  size_t b = 0;
  for (size_t k = 0; k < u.size(); ++k) {
    const char32_t c = u[k];
    const bool br = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                    c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!br) continue;
    out.push_back(Value::string(utf8_encode(std::u32string_view(u).substr(b, k - b))));
    if (c == '\r' && k + 1 < u.size() && u[k + 1] == '\n') ++k;
    b = k + 1;
  }
  if (b < u.size()) out.push_back(Value::string(utf8_encode(std::u32string_view(u).substr(b))));
  return out;
}

// Code-point index of byte offset `off` in s.
int64_t cp_index(const std::string& s, size_t off) {
  return int64_t(utf8_length(std::string_view(s).substr(0, off)));
}

std::string py_format(const std::string& fmt, const Args& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    const char c = fmt[k];
    if (c == '{' && k + 1 < fmt.size() && fmt[k + 1] == '{') {
      out += '{';
      ++k;
    } else if (c == '}' && k + 1 < fmt.size() && fmt[k + 1] == '}') {
      out += '}';
      ++k;
    } else if (c == '{') {
      const size_t e = fmt.find('}', k);
      if (e == std::string::npos) render_fail("single '{' encountered in format string");
      const std::string field = fmt.substr(k + 1, e - k - 1);
      if (field.find_first_of(":!.[") != std::string::npos)
        render_fail("unsupported construct: format spec '{" + field + "}' in str.format");
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_idx >= a.pos.size())
          render_fail("Replacement index " + std::to_string(auto_idx) + " out of range");
        v = &a.pos[auto_idx++];
      } else if (isdigit((unsigned char)field[0])) {
        const size_t idx = size_t(std::stoul(field));
        if (idx >= a.pos.size()) render_fail("Replacement index " + field + " out of range");
        v = &a.pos[idx];
      } else {
        for (const auto& [n, kv] : a.kw)
          if (n == field) v = &kv;
        if (!v) render_fail("format: missing argument '" + field + "'");
      }
      append_str(out, *v);
      k = e;
    } else if (c == '}') {
      render_fail("single '}' encountered in format string");
    } else {
      out += c;
    }
  }
  return out;
}

Value str_method(const Value& obj, const std::string& name, Args& a) {
  const std::string& s = obj.s;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    auto p = bind(name, a, {"chars"});
    return Value::string(py_strip(s, p[0], name != "rstrip", name != "lstrip"));
  }
  if (name == "startswith" || name == "endswith") {
    auto p = bind(name, a, {"prefix", "start", "end"});
    if (!p[0]) render_fail(name + "() takes at least 1 argument (0 given)");
    if (given(p[1]) || given(p[2]))
      render_fail("unsupported construct: " + name + "() with start/end");
    List cands;
    if (p[0]->kind == Value::Kind::List)
      cands = *p[0]->list;
    else
      cands.push_back(*p[0]);
    for (const Value& c : cands) {
      const std::string& x = need_str(c, name + " arg");
      if (x.size() > s.size()) continue;
      if (name == "startswith" ? s.compare(0, x.size(), x) == 0
                               : s.compare(s.size() - x.size(), x.size(), x) == 0)
        return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "split" || name == "rsplit") {
    auto p = bind(name, a, {"sep", "maxsplit"});
    return Value::make_list(py_split(s, p[0], to_int(p[1], -1, "maxsplit"), name == "rsplit"));
  }
  if (name == "replace") {
    auto p = bind(name, a, {"old", "new", "count"});
    if (!p[0] || !p[1]) render_fail("replace() takes at least 2 arguments");
    return Value::string(py_replace(s, need_str(*p[0], "replace arg"),
                                    need_str(*p[1], "replace arg"), to_int(p[2], -1, "count")));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    bind(name, a, {});
    if (name == "upper") return Value::string(ascii_map(s, toupper));
    if (name == "lower") return Value::string(ascii_map(s, tolower));
    if (name == "title") return Value::string(py_title(s));
    return Value::string(py_capitalize(s));
  }
  if (name == "find" || name == "rfind" || name == "index") {
    auto p = bind(name, a, {"sub", "start", "end"});
    if (!p[0]) render_fail(name + "() takes at least 1 argument (0 given)");
    if (given(p[1]) || given(p[2]))
      render_fail("unsupported construct: " + name + "() with start/end");
    const std::string& sub = need_str(*p[0], name + " arg");
    const size_t f = name == "rfind" ? s.rfind(sub) : s.find(sub);
    if (f == std::string::npos) {
      if (name == "index") render_fail("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(cp_index(s, f));
  }
  if (name == "count") {
    auto p = bind(name, a, {"sub"});
    if (!p[0]) render_fail("count() takes at least 1 argument (0 given)");
    const std::string& sub = need_str(*p[0], "count arg");
    if (sub.empty()) return Value::integer(int64_t(utf8_length(s)) + 1);
    int64_t n = 0;
    for (size_t f = s.find(sub); f != std::string::npos; f = s.find(sub, f + sub.size())) ++n;
    return Value::integer(n);
  }
  if (name == "format") return Value::string(py_format(s, a));
  if (name == "join") {
    auto p = bind(name, a, {"iterable"});
    if (!p[0]) render_fail("join() takes exactly one argument (0 given)");
    std::string out;
    bool first = true;
    for (const Value& v : iterate(*p[0])) {
      if (!first) out += s;
      first = false;
      out += need_str(v, "sequence item");
    }
    return Value::string(std::move(out));
  }
  if (name == "splitlines") {
    bind(name, a, {});
    return Value::make_list(py_splitlines(s));
  }
  if (name.rfind("is", 0) == 0) {
    bind(name, a, {});
    if (s.empty()) return Value::boolean(false);
    const std::u32string u = utf8_decode(s);
    bool any_cased = false, ok = true;
    for (char32_t c : u) {
      const bool asc = c < 0x80;
      if (name == "isspace")
        ok &= py_isspace(c);
      else if (name == "isdigit")
        ok &= asc && isdigit(int(c));
      else if (name == "isalpha")
        ok &= asc && isalpha(int(c));
      else if (name == "isalnum")
        ok &= asc && isalnum(int(c));
      else if (name == "islower") {
        ok &= !(asc && isupper(int(c)));
        any_cased |= asc && islower(int(c));
      } else if (name == "isupper") {
        ok &= !(asc && islower(int(c)));
        any_cased |= asc && isupper(int(c));
      }
    }
    if (name == "islower" || name == "isupper") ok &= any_cased;
    return Value::boolean(ok);
  }
  render_fail("'str' object has no attribute '" + name + "'");
}

}  // namespace

bool known_filter(const std::string& n) {
  return kFilters.count(n) > 0;
}
bool known_test(const std::string& n) {
  return kTests.count(n) > 0;
}
bool known_method(const std::string& n) {
  return kMethods.count(n) > 0;
}
bool known_global(const std::string& n) {
  return kGlobals.count(n) > 0;
}

Value call_method(Renderer& r, const Value& obj, const std::string& name, Args args) {
  (void)r;
  if (obj.is_undefined()) undefined_fail(obj);
  if (kMutators.count(name) && (obj.kind == Value::Kind::List || obj.kind == Value::Kind::Dict))
    render_fail("access to attribute '" + name + "' of '" + type_name(obj) +
                "' object is unsafe (the template may not modify its input)");
  switch (obj.kind) {
    case Value::Kind::String:
      return str_method(obj, name, args);
    case Value::Kind::Dict: {
      if (name == "items" || name == "keys" || name == "values") {
        bind(name, args, {});
        List out;
        for (const auto& [k, v] : obj.dict->items) {
          if (name == "items")
            out.push_back(Value::make_list({Value::string(k), v}));
          else if (name == "keys")
            out.push_back(Value::string(k));
          else
            out.push_back(v);
        }
        return Value::make_list(std::move(out));
      }
      if (name == "get") {
        auto p = bind(name, args, {"key", "default"});
        if (!p[0]) render_fail("get expected at least 1 argument, got 0");
        if (p[0]->is_string())
          if (const Value* v = obj.dict->find(p[0]->s)) return *v;
        return p[1] ? *p[1] : Value::none();
      }
      break;
    }
    case Value::Kind::List: {
      if (name == "index" || name == "count") {
        auto p = bind(name, args, {"value"});
        if (!p[0]) render_fail(name + "() takes exactly one argument (0 given)");
        int64_t n = 0;
        for (size_t k = 0; k < obj.list->size(); ++k) {
          if (!equal((*obj.list)[k], *p[0])) continue;
          if (name == "index") return Value::integer(int64_t(k));
          ++n;
        }
        if (name == "index") render_fail(repr(*p[0]) + " is not in list");
        return Value::integer(n);
      }
      break;
    }
    case Value::Kind::Loop:
      if (name == "cycle") {
        if (args.pos.empty()) render_fail("no items for cycling given");
        return args.pos[size_t(obj.loop->index0) % args.pos.size()];
      }
      break;
    default:
      break;
  }
  render_fail(std::string("'") + type_name(obj) + "' object has no attribute '" + name + "'");
}

Value call_global(Renderer& r, const std::string& name, Args args) {
  (void)r;
  if (name == "raise_exception") {
    auto p = bind(name, args, {"message"});
    throw ChatTemplateRenderError(p[0] ? to_str(*p[0]) : std::string(), true);
  }
  if (name == "strftime_now") {
    auto p = bind(name, args, {"format"});
    if (!p[0]) render_fail("strftime_now() takes 1 argument");
    const std::string& fmt = need_str(*p[0], "strftime_now format");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::string buf(64 + fmt.size() * 4, '\0');
    const size_t n = fmt.empty() ? 0 : std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    buf.resize(n);
    return Value::string(std::move(buf));
  }
  if (name == "namespace" || name == "dict") {
    Dict d;
    if (args.pos.size() > 1) render_fail(name + "() takes at most 1 positional argument");
    if (!args.pos.empty()) {
      if (args.pos[0].kind != Value::Kind::Dict)
        render_fail(name + "() positional argument must be a dict");
      d = *args.pos[0].dict;
    }
    for (auto& [k, v] : args.kw) d.set(k, std::move(v));
    Value v = Value::make_dict(std::move(d));
    if (name == "namespace") v.kind = Value::Kind::Namespace;
    return v;
  }
  if (name == "range") {
    if (!args.kw.empty() || args.pos.empty() || args.pos.size() > 3)
      render_fail("range() takes 1 to 3 positional arguments");
    int64_t start = 0, stop, step = 1;
    std::vector<int64_t> n;
    for (const Value& v : args.pos) n.push_back(to_int(v, 0, "range() argument"));
    if (n.size() == 1)
      stop = n[0];
    else {
      start = n[0];
      stop = n[1];
      if (n.size() == 3) step = n[2];
    }
    if (step == 0) render_fail("range() arg 3 must not be zero");
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      // jinja2's sandbox caps ranges at MAX_RANGE.
      if (out.size() >= 100000) render_fail("range too big, maximum size for range is 100000");
      out.push_back(Value::integer(k));
    }
    return Value::make_list(std::move(out));
  }
  render_fail("'" + name + "' is undefined");
}

namespace {

// jinja2's make_attrgetter: "a.b.0" looks up item by item.
Value attr_path(const Value& item, const std::string& path) {
  Value cur = item;
  size_t b = 0;
  for (;;) {
    const size_t e = path.find('.', b);
    const std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    Value key = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)
                    ? Value::integer(std::stoll(part))
                    : Value::string(part);
    cur = getitem(cur, key);
    if (e == std::string::npos) return cur;
    b = e + 1;
  }
}

int64_t to_int(const Value& v) {
  return v.kind == Value::Kind::Bool ? v.b : v.i;
}

bool is_int(const Value& v) {
  return v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool;
}

// Python's int(str): optional sign, digits with single underscores, whitespace around.
bool parse_py_int(const std::string& s, int64_t* out) {
  size_t b = 0, e = s.size();
  while (b < e && isspace((unsigned char)s[b])) ++b;
  while (e > b && isspace((unsigned char)s[e - 1])) --e;
  std::string digits;
  bool neg = false;
  if (b < e && (s[b] == '+' || s[b] == '-')) neg = s[b++] == '-';
  if (b == e) return false;
  for (size_t k = b; k < e; ++k) {
    if (isdigit((unsigned char)s[k]))
      digits += s[k];
    else if (s[k] == '_' && k > b && k + 1 < e && isdigit((unsigned char)s[k - 1]) &&
             isdigit((unsigned char)s[k + 1]))
      continue;
    else
      return false;
  }
  errno = 0;
  const long long v = std::strtoll(digits.c_str(), nullptr, 10);
  if (errno == ERANGE) render_fail("integer " + s + " is out of range");
  *out = neg ? -v : v;
  return true;
}

bool parse_py_float(const std::string& s, double* out) {
  size_t b = 0, e = s.size();
  while (b < e && isspace((unsigned char)s[b])) ++b;
  while (e > b && isspace((unsigned char)s[e - 1])) --e;
  const std::string t = s.substr(b, e - b);
  if (t.empty() || t.find('_') != std::string::npos) return false;
  for (char c : t)
    if (!(isdigit((unsigned char)c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' ||
          isalpha((unsigned char)c)))
      return false;
  char* end = nullptr;
  const double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return false;
  // strtod reads hex floats and "infinity"/"nan(...)" spellings Python refuses.
  if (t.find_first_of("xX(") != std::string::npos) return false;
  *out = d;
  return true;
}

}  // namespace

bool Renderer::apply_test(const std::string& name, const Value& v, const Args& args_in, Pos) {
  Args args = args_in;
  auto arg = [&](const char* what) -> const Value& {
    if (args.pos.empty()) render_fail("test '" + name + "' needs " + what);
    return args.pos[0];
  };
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind == K::Dict;
  if (name == "sequence")
    return v.kind == K::List || v.is_string() || v.kind == K::Dict || v.is_undefined();
  if (name == "iterable")
    return v.kind == K::List || v.is_string() || v.kind == K::Dict || v.is_undefined();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind == K::Int;
  if (name == "float") return v.kind == K::Float;
  if (name == "boolean") return v.kind == K::Bool;
  if (name == "true") return v.kind == K::Bool && v.b;
  if (name == "false") return v.kind == K::Bool && !v.b;
  if (name == "callable") return v.kind == K::Macro || v.kind == K::Global;
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    Args none;
    return str_method(v, name == "lower" ? "islower" : "isupper", none).b;
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (v.is_undefined()) undefined_fail(v);
    if (!is_int(v)) render_fail("test '" + name + "' needs an integer, not " + type_name(v));
    const int64_t d = name == "divisibleby" ? to_int(arg("a divisor")) : 2;
    if (d == 0) render_fail("integer division or modulo by zero");
    const int64_t m = ((to_int(v) % d) + d) % d;
    return name == "odd" ? m == 1 : m == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equal(v, arg("a value"));
  if (name == "ne" || name == "!=") return !equal(v, arg("a value"));
  if (name == "sameas") {
    const Value& o = arg("a value");
    if (v.kind != o.kind) return false;
    if (v.kind == K::None || v.kind == K::Bool || v.kind == K::Undefined) return equal(v, o);
    return (v.list && v.list == o.list) || (v.dict && v.dict == o.dict);
  }
  if (name == "in") {
    const Value& c = arg("a container");
    if (c.is_string()) return v.is_string() && c.s.find(v.s) != std::string::npos;
    for (const Value& e : iterate(c))
      if (equal(e, v)) return true;
    return false;
  }
  const Value& o = arg("a value");
  if (v.is_undefined()) undefined_fail(v);
  if (o.is_undefined()) undefined_fail(o);
  if (name == "lt" || name == "lessthan" || name == "<") return less(v, o);
  if (name == "gt" || name == "greaterthan" || name == ">") return less(o, v);
  if (name == "le" || name == "<=") return !less(o, v);
  if (name == "ge" || name == ">=") return !less(v, o);
  render_fail("unknown test '" + name + "'");
}

Value Renderer::apply_filter(const std::string& name, const Value& v, Args a, Pos pos) {
  using K = Value::Kind;
  if (name == "default" || name == "d") {
    auto p = bind(name, a, {"default_value", "boolean"});
    const bool boolean = p[1] && p[1]->truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return p[0] ? *p[0] : Value::string("");
    return v;
  }
  if (name == "length" || name == "count") {
    bind(name, a, {});
    switch (v.kind) {
      case K::Undefined:
        return Value::integer(0);
      case K::String:
        return Value::integer(int64_t(utf8_length(v.s)));
      case K::List:
        return Value::integer(int64_t(v.list->size()));
      case K::Dict:
        return Value::integer(int64_t(v.dict->items.size()));
      default:
        render_fail(std::string("object of type '") + type_name(v) + "' has no len()");
    }
  }
  if (name == "tojson") {
    // transformers' own tojson: json.dumps(x, ensure_ascii=False, indent=None,
    // separators=None, sort_keys=False), no HTML escaping.
    auto p = bind(name, a, {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonOptions o;
    o.ensure_ascii = p[0] && p[0]->truthy();
    if (given(p[1])) {
      if (p[1]->is_string())
        o.indent_str = p[1]->s;
      else
        o.indent = int(std::max<int64_t>(0, to_int(p[1], 0, "indent")));
    }
    if (given(p[2])) {
      const List seps = iterate(*p[2]);
      if (seps.size() != 2) render_fail("tojson separators must be a pair");
      o.item_sep = need_str(seps[0], "separator");
      o.key_sep = need_str(seps[1], "separator");
      o.separators_set = true;
    }
    o.sort_keys = p[3] && p[3]->truthy();
    if (v.is_undefined()) render_fail("Object of type Undefined is not JSON serializable");
    return Value::string(to_json(v, o));
  }
  if (name == "safe") return v;
  if (name == "escape" || name == "e") {
    std::string out;
    for (char c : to_str(v)) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return Value::string(std::move(out));
  }
  if (name == "trim") {
    auto p = bind(name, a, {"chars"});
    return Value::string(py_strip(to_str(v), p[0], true, true));
  }
  if (name == "upper") return Value::string(ascii_map(to_str(v), toupper));
  if (name == "lower") return Value::string(ascii_map(to_str(v), tolower));
  if (name == "capitalize") return Value::string(py_capitalize(to_str(v)));
  if (name == "title") return Value::string(jinja_title(to_str(v)));
  if (name == "string") return Value::string(to_str(v));
  if (name == "replace") {
    auto p = bind(name, a, {"old", "new", "count"});
    if (!p[0] || !p[1]) render_fail("replace filter needs old and new");
    return Value::string(
        py_replace(to_str(v), to_str(*p[0]), to_str(*p[1]), to_int(p[2], -1, "count")));
  }
  if (name == "wordcount") {
    // \w+ runs; non-ASCII letters count as word characters.
    int64_t n = 0;
    bool in = false;
    for (char32_t c : utf8_decode(to_str(v))) {
      const bool w = c >= 0x80 ? !py_isspace(c) : (isalnum(int(c)) || c == '_');
      if (w && !in) ++n;
      in = w;
    }
    return Value::integer(n);
  }
  if (name == "indent") {
    auto p = bind(name, a, {"width", "first", "blank"});
    std::string ind = "    ";
    if (p[0])
      ind = p[0]->is_string()
                ? p[0]->s
                : std::string(size_t(std::max<int64_t>(0, to_int(p[0], 4, "width"))), ' ');
    const bool first = p[1] && p[1]->truthy(), blank = p[2] && p[2]->truthy();
    const List lines = py_splitlines(to_str(v) + "\n");
    std::string out;
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k > 0) {
        out += '\n';
        if (blank || !lines[k].s.empty()) out += ind;
      }
      out += lines[k].s;
    }
    if (first) out = ind + out;
    return Value::string(std::move(out));
  }
  if (name == "join") {
    auto p = bind(name, a, {"d", "attribute"});
    const std::string sep = p[0] ? to_str(*p[0]) : std::string();
    std::string out;
    bool firstp = true;
    for (const Value& e : iterate(v)) {
      if (!firstp) out += sep;
      firstp = false;
      append_str(out, given(p[1]) ? attr_path(e, to_str(*p[1])) : e);
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    bind(name, a, {});
    if (v.is_string()) {
      const std::u32string u = utf8_decode(v.s);
      if (u.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
      std::string s;
      utf8_append(s, name == "first" ? u.front() : u.back());
      return Value::string(std::move(s));
    }
    const List items = iterate(v);
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "items") {
    bind(name, a, {});
    if (v.is_undefined()) return Value::make_list({});
    if (v.kind != K::Dict) render_fail("can only get item pairs from a mapping.");
    Args none;
    return call_method(*this, v, "items", none);
  }
  if (name == "list") return Value::make_list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.s);
      std::reverse(u.begin(), u.end());
      return Value::string(utf8_encode(u));
    }
    List l = iterate(v);
    std::reverse(l.begin(), l.end());
    return Value::make_list(std::move(l));
  }
  if (name == "unique") {
    auto p = bind(name, a, {"case_sensitive", "attribute"});
    const bool cs = p[0] && p[0]->truthy();
    List out;
    std::vector<Value> seen;
    for (const Value& e : iterate(v)) {
      Value key = given(p[1]) ? attr_path(e, to_str(*p[1])) : e;
      if (key.is_string() && !cs) key.s = ascii_map(key.s, tolower);
      bool dup = false;
      for (const Value& s : seen) dup |= equal(s, key);
      if (!dup) {
        seen.push_back(key);
        out.push_back(e);
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "sort" || name == "min" || name == "max") {
    auto p = name == "sort" ? bind(name, a, {"reverse", "case_sensitive", "attribute"})
                            : bind(name, a, {"case_sensitive", "attribute"});
    if (name != "sort") p.insert(p.begin(), std::nullopt);
    const bool rev = p[0] && p[0]->truthy(), cs = p[1] && p[1]->truthy();
    List l = iterate(v);
    std::vector<std::pair<Value, size_t>> keyed;
    for (size_t k = 0; k < l.size(); ++k) {
      Value key = given(p[2]) ? attr_path(l[k], to_str(*p[2])) : l[k];
      if (key.is_string() && !cs) key.s = ascii_map(key.s, tolower);
      keyed.emplace_back(std::move(key), k);
    }
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      return rev ? less(y.first, x.first) : less(x.first, y.first);
    });
    if (name == "sort") {
      List out;
      for (auto& [key, k] : keyed) out.push_back(l[k]);
      return Value::make_list(std::move(out));
    }
    if (l.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    return l[name == "min" ? keyed.front().second : keyed.back().second];
  }
  if (name == "sum") {
    auto p = bind(name, a, {"attribute", "start"});
    Value acc = p[1] ? *p[1] : Value::integer(0);
    for (const Value& e : iterate(v)) {
      Value x = given(p[0]) ? attr_path(e, to_str(*p[0])) : e;
      if (!acc.is_number() || !x.is_number())
        render_fail(std::string("unsupported operand type(s) for +: '") + type_name(acc) +
                    "' and '" + type_name(x) + "'");
      acc = (acc.kind == K::Float || x.kind == K::Float)
                ? Value::number(acc.as_double() + x.as_double())
                : Value::integer(to_int(acc) + to_int(x));
    }
    return acc;
  }
  if (name == "abs") {
    if (v.kind == K::Float) return Value::number(std::fabs(v.f));
    if (is_int(v)) return Value::integer(std::llabs(to_int(v)));
    if (v.is_undefined()) undefined_fail(v);
    render_fail(std::string("bad operand type for abs(): '") + type_name(v) + "'");
  }
  if (name == "int") {
    auto p = bind(name, a, {"default", "base"});
    const Value dflt = p[0] ? *p[0] : Value::integer(0);
    if (given(p[1]) && to_int(p[1], 10, "base") != 10)
      render_fail("unsupported construct: int filter with a base");
    if (is_int(v)) return Value::integer(to_int(v));
    if (v.kind == K::Float) {
      if (!std::isfinite(v.f))
        render_fail("cannot convert float " + float_repr(v.f) + " to integer");
      return Value::integer(int64_t(v.f));
    }
    if (v.is_string()) {
      int64_t i;
      if (parse_py_int(v.s, &i)) return Value::integer(i);
      double d;
      if (parse_py_float(v.s, &d)) {
        if (!std::isfinite(d)) render_fail("cannot convert float " + float_repr(d) + " to integer");
        return Value::integer(int64_t(d));
      }
    }
    return dflt;
  }
  if (name == "float") {
    auto p = bind(name, a, {"default"});
    const Value dflt = p[0] ? *p[0] : Value::number(0.0);
    if (v.is_number()) return Value::number(v.as_double());
    if (v.is_string()) {
      double d;
      if (parse_py_float(v.s, &d)) return Value::number(d);
    }
    return dflt;
  }
  if (name == "round") {
    auto p = bind(name, a, {"precision", "method"});
    const int64_t prec = to_int(p[0], 0, "precision");
    const std::string method = p[1] ? to_str(*p[1]) : "common";
    if (v.is_undefined()) undefined_fail(v);
    if (!v.is_number())
      render_fail(std::string("type ") + type_name(v) + " doesn't define __round__ method");
    if (method == "common") {
      if (v.kind != K::Float) return Value::integer(to_int(v));  // round(int, n) is the int
      if (!std::isfinite(v.f)) return v;
      if (prec == 0) return Value::number(std::nearbyint(v.f));
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", int(std::clamp<int64_t>(prec, -300, 300)), v.f);
      return Value::number(std::strtod(buf, nullptr));
    }
    if (method != "floor" && method != "ceil")
      render_fail("method must be 'common', 'ceil' or 'floor'");
    const double scale = std::pow(10.0, double(prec));
    const double x = v.as_double() * scale;
    return Value::number((method == "floor" ? std::floor(x) : std::ceil(x)) / scale);
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool attr = name == "selectattr" || name == "rejectattr";
    const bool want = name == "selectattr" || name == "select";
    size_t k = 0;
    std::string path;
    if (attr) {
      if (a.pos.empty()) render_fail(name + " needs an attribute name");
      path = to_str(a.pos[k++]);
    }
    std::string test;
    if (k < a.pos.size()) test = to_str(a.pos[k++]);
    if (!test.empty() && !known_test(test))
      render_fail("unsupported test '" + test + "' in " + name);
    Args targs;
    targs.pos.assign(a.pos.begin() + long(k), a.pos.end());
    targs.kw = a.kw;
    List out;
    if (!v.truthy()) return Value::make_list({});  // jinja2 skips a falsy sequence
    for (const Value& e : iterate(v)) {
      const Value x = attr ? attr_path(e, path) : e;
      const bool ok = test.empty() ? x.truthy() : apply_test(test, x, targs, pos);
      if (ok == want) out.push_back(e);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "map") {
    List out;
    if (!v.truthy()) return Value::make_list({});  // jinja2 skips a falsy sequence
    const Value* attribute = nullptr;
    const Value* dflt = nullptr;
    for (const auto& [k, x] : a.kw) {
      if (k == "attribute")
        attribute = &x;
      else if (k == "default")
        dflt = &x;
    }
    if (attribute) {
      for (const Value& e : iterate(v)) {
        Value x = attr_path(e, to_str(*attribute));
        if (x.is_undefined() && dflt) x = *dflt;
        out.push_back(std::move(x));
      }
      return Value::make_list(std::move(out));
    }
    if (a.pos.empty()) render_fail("map needs a filter name or attribute=");
    const std::string f = to_str(a.pos[0]);
    if (!known_filter(f)) render_fail("unsupported filter '" + f + "' in map");
    Args fargs;
    fargs.pos.assign(a.pos.begin() + 1, a.pos.end());
    fargs.kw = a.kw;
    for (const Value& e : iterate(v)) out.push_back(apply_filter(f, e, fargs, pos));
    return Value::make_list(std::move(out));
  }
  render_fail("unsupported filter '" + name + "'");
}

}  // namespace tpinfer::jinja
