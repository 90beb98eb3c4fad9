// The statement and expression evaluator. Scoping follows jinja2: each
// iteration of a for loop runs in a fresh scope (a {% set %} in the body does
// not survive the iteration, which is why templates use namespace()), `if`
// opens no scope, and a macro's body sees its arguments and the template's
// top level.
#include "text/jinja_eval.hpp"

#include <cmath>

#include "text/chat_template_error.hpp"

namespace tpinfer::jinja {

void render_fail(const std::string& what) {
  throw ChatTemplateRenderError(what);
}

void undefined_fail(const Value& undef) {
  render_fail(undef.s.empty() ? std::string("value is undefined") : undef.s);
}

namespace {

Value undefined_name(const std::string& name) {
  return Value::undefined("'" + name + "' is undefined");
}

bool is_dict_method(const std::string& n) {
  return n == "items" || n == "keys" || n == "values" || n == "get";
}

// A method looked up but not called (`d.items is defined`): callable, not printable.
Value bound_method(const char* type, const std::string& name) {
  Value v;
  v.kind = Value::Kind::Global;
  v.s = std::string(type) + "." + name;
  return v;
}

Value undefined_attr(const Value& obj, const std::string& name) {
  return Value::undefined("'" + std::string(type_name(obj)) + " object' has no attribute '" + name +
                          "'");
}

// Python's index into a sequence of n, or -1 when out of range.
int64_t py_index(int64_t k, int64_t n) {
  if (k < 0) k += n;
  return (k < 0 || k >= n) ? -1 : k;
}

int64_t as_index(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  if (v.kind == Value::Kind::None) return INT64_MIN;  // an omitted slice part
  render_fail(std::string(what) + " indices must be integers or None, not " + type_name(v));
}

// The positions a Python slice selects.
std::vector<int64_t> slice_positions(int64_t n, const Value* start, const Value* stop,
                                     const Value* step) {
  int64_t st = 1;
  if (step && !step->is_none()) st = as_index(*step, "slice");
  if (st == 0) render_fail("slice step cannot be zero");
  auto clamp = [&](const Value* v, int64_t dflt_pos, int64_t dflt_neg) -> int64_t {
    if (!v || v->is_none()) return st > 0 ? dflt_pos : dflt_neg;
    int64_t k = as_index(*v, "slice");
    if (k < 0) {
      k += n;
      if (k < 0) k = st > 0 ? 0 : -1;
    } else if (k >= n) {
      k = st > 0 ? n : n - 1;
    }
    return k;
  };
  const int64_t b = clamp(start, 0, n - 1);
  const int64_t e = clamp(stop, n, -1);
  std::vector<int64_t> out;
  if (st > 0)
    for (int64_t k = b; k < e; k += st) out.push_back(k);
  else
    for (int64_t k = b; k > e; k += st) out.push_back(k);
  return out;
}

Value arith(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_fail(a);
  if (b.is_undefined()) undefined_fail(b);
  auto type_error = [&]() -> Value {
    if (op == "+" && a.is_string())
      render_fail(std::string("can only concatenate str (not \"") + type_name(b) + "\") to str");
    render_fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" +
                type_name(b) + "'");
  };
  if (a.is_number() && b.is_number()) {
    const bool ints = a.kind != Value::Kind::Float && b.kind != Value::Kind::Float;
    const int64_t x = a.kind == Value::Kind::Bool ? a.b : a.i;
    const int64_t y = b.kind == Value::Kind::Bool ? b.b : b.i;
    const double fx = a.as_double(), fy = b.as_double();
    int64_t r = 0;
    if (op == "+") {
      if (!ints) return Value::number(fx + fy);
      if (__builtin_add_overflow(x, y, &r)) render_fail("integer overflow in +");
      return Value::integer(r);
    }
    if (op == "-") {
      if (!ints) return Value::number(fx - fy);
      if (__builtin_sub_overflow(x, y, &r)) render_fail("integer overflow in -");
      return Value::integer(r);
    }
    if (op == "*") {
      if (!ints) return Value::number(fx * fy);
      if (__builtin_mul_overflow(x, y, &r)) render_fail("integer overflow in *");
      return Value::integer(r);
    }
    if (op == "/") {
      if (fy == 0) render_fail("division by zero");
      return Value::number(fx / fy);
    }
    if (op == "//" || op == "%") {
      if (ints ? y == 0 : fy == 0)
        render_fail(op == "//" ? "integer division or modulo by zero" : "modulo by zero");
      if (ints) {
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          --q;
          m += y;
        }
        return Value::integer(op == "//" ? q : m);
      }
      // CPython's float divmod.
      double m = std::fmod(fx, fy);
      double div = (fx - m) / fy;
      if (m != 0) {
        if ((fy < 0) != (m < 0)) {
          m += fy;
          div -= 1.0;
        }
      } else {
        m = std::copysign(0.0, fy);
      }
      if (op == "%") return Value::number(m);
      double fl;
      if (div != 0) {
        fl = std::floor(div);
        if (div - fl > 0.5) fl += 1.0;
      } else {
        fl = std::copysign(0.0, fx / fy);
      }
      return Value::number(fl);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t acc = 1;
        for (int64_t k = 0; k < y; ++k)
          if (__builtin_mul_overflow(acc, x, &acc)) render_fail("integer overflow in **");
        return Value::integer(acc);
      }
      return Value::number(std::pow(fx, fy));
    }
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(l));
    }
  }
  if (op == "*") {
    const Value* seq = (a.is_string() || a.kind == Value::Kind::List) ? &a : &b;
    const Value* cnt = seq == &a ? &b : &a;
    if ((cnt->kind == Value::Kind::Int || cnt->kind == Value::Kind::Bool) &&
        (seq->is_string() || seq->kind == Value::Kind::List)) {
      const int64_t n = cnt->kind == Value::Kind::Bool ? cnt->b : cnt->i;
      if (n > 1000000) render_fail("sequence repetition too large");
      if (seq->is_string()) {
        std::string s;
        for (int64_t k = 0; k < n; ++k) s += seq->s;
        return Value::string(std::move(s));
      }
      List l;
      for (int64_t k = 0; k < n; ++k) l.insert(l.end(), seq->list->begin(), seq->list->end());
      return Value::make_list(std::move(l));
    }
  }
  if (op == "%" && a.is_string()) render_fail("unsupported construct: '%' string formatting");
  return type_error();
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::String:
      if (!item.is_string())
        render_fail(std::string("'in <string>' requires string as left operand, not ") +
                    type_name(item));
      return container.s.find(item.s) != std::string::npos;
    case Value::Kind::List:
      for (const Value& e : *container.list)
        if (equal(e, item)) return true;
      return false;
    case Value::Kind::Dict:
    case Value::Kind::Namespace:
      return item.is_string() && container.dict->find(item.s) != nullptr;
    case Value::Kind::Undefined:
      return false;
    default:
      render_fail(std::string("argument of type '") + type_name(container) + "' is not iterable");
  }
}

}  // namespace

Value getattr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Value::Kind::Undefined:
      undefined_fail(obj);
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
      if (obj.kind == Value::Kind::Dict && is_dict_method(name)) return bound_method("dict", name);
      if (const Value* v = obj.dict->find(name)) return *v;
      return undefined_attr(obj, name);
    }
    case Value::Kind::String:
      if (known_method(name)) return bound_method("str", name);
      return undefined_attr(obj, name);
    case Value::Kind::Loop: {
      const LoopState& l = *obj.loop;
      if (name == "index") return Value::integer(l.index0 + 1);
      if (name == "index0") return Value::integer(l.index0);
      if (name == "revindex") return Value::integer(l.length - l.index0);
      if (name == "revindex0") return Value::integer(l.length - l.index0 - 1);
      if (name == "first") return Value::boolean(l.index0 == 0);
      if (name == "last") return Value::boolean(l.index0 == l.length - 1);
      if (name == "length") return Value::integer(l.length);
      if (name == "depth") return Value::integer(l.depth);
      if (name == "depth0") return Value::integer(l.depth - 1);
      if (name == "previtem")
        return l.index0 > 0 ? (*l.items)[size_t(l.index0 - 1)]
                            : Value::undefined("there is no previous item");
      if (name == "nextitem")
        return l.index0 + 1 < l.length ? (*l.items)[size_t(l.index0 + 1)]
                                       : Value::undefined("there is no next item");
      return undefined_attr(obj, name);
    }
    default:
      return undefined_attr(obj, name);
  }
}

Value getitem(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Value::Kind::Undefined:
      undefined_fail(obj);
    case Value::Kind::List:
      if (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool) {
        const int64_t k =
            py_index(key.kind == Value::Kind::Bool ? key.b : key.i, int64_t(obj.list->size()));
        if (k < 0) return Value::undefined("list object has no element " + to_str(key));
        return (*obj.list)[size_t(k)];
      }
      break;
    case Value::Kind::String:
      if (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool) {
        const int64_t want = key.kind == Value::Kind::Bool ? key.b : key.i;
        if (is_ascii(obj.s)) {
          const int64_t k = py_index(want, int64_t(obj.s.size()));
          if (k < 0) return Value::undefined("str object has no element " + to_str(key));
          return Value::string(std::string(1, obj.s[size_t(k)]));
        }
        const std::u32string u = utf8_decode(obj.s);
        const int64_t k = py_index(want, int64_t(u.size()));
        if (k < 0) return Value::undefined("str object has no element " + to_str(key));
        std::string s;
        utf8_append(s, u[size_t(k)]);
        return Value::string(std::move(s));
      }
      break;
    case Value::Kind::Dict:
    case Value::Kind::Namespace:
      if (key.is_string()) {
        if (const Value* v = obj.dict->find(key.s)) return *v;
        if (obj.kind == Value::Kind::Dict && is_dict_method(key.s))
          return bound_method("dict", key.s);
        return Value::undefined("'" + std::string(type_name(obj)) + " object' has no attribute '" +
                                key.s + "'");
      }
      break;
    default:
      break;
  }
  // jinja2 falls back to the attribute for a string key, then to undefined.
  if (key.is_string()) return getattr(obj, key.s);
  return Value::undefined(std::string(type_name(obj)) + " object has no element " + repr(key));
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
      return *v.list;
    case Value::Kind::Dict: {
      List keys;
      for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      List chars;
      for (char32_t c : utf8_decode(v.s)) {
        std::string s;
        utf8_append(s, c);
        chars.push_back(Value::string(std::move(s)));
      }
      return chars;
    }
    default:
      render_fail(std::string("'") + type_name(v) + "' object is not iterable");
  }
}

Renderer::Renderer(const Template& tpl, Dict vars) : tpl_(tpl), vars_(std::move(vars)) {}

std::string Renderer::render() {
  std::string out;
  out.reserve(4096);
  out_ = &out;
  frames_.clear();
  depth_ = 0;
  current_ = push_frame(-1);
  frames_[0].vars = std::move(vars_.items);
  exec(tpl_.body);
  return out;
}

int Renderer::push_frame(int parent) {
  if (depth_ == int(frames_.size())) frames_.emplace_back();
  Frame& f = frames_[size_t(depth_)];
  f.vars.clear();
  f.parent = parent;
  return depth_++;
}

void Renderer::pop_frame() {
  --depth_;
}

const Value* Renderer::lookup(const std::string& name) const {
  for (int f = current_; f >= 0; f = frames_[size_t(f)].parent)
    if (const Value* v = frames_[size_t(f)].find(name)) return v;
  return nullptr;
}

Renderer::Flow Renderer::exec(const Body& body) {
  for (const StmtPtr& sp : body) {
    const Stmt& s = *sp;
    switch (s.kind) {
      case StmtKind::Text:
        *out_ += s.text;
        break;
      case StmtKind::Output: {
        if (s.expr->kind == ExprKind::Literal) {
          append_str(*out_, s.expr->value);
        } else {
          append_str(*out_, eval(*s.expr));
        }
        break;
      }
      case StmtKind::If:
        for (const auto& [cond, branch] : s.branches) {
          if (!cond || eval(*cond).truthy()) {
            const Flow f = exec(branch);
            if (f != Flow::Normal) return f;
            break;
          }
        }
        break;
      case StmtKind::For:
        exec_for(s);
        break;
      case StmtKind::Set: {
        Value v;
        if (s.block_set) {
          std::string buf;
          std::string* saved = out_;
          out_ = &buf;
          exec(s.body);
          out_ = saved;
          v = Value::string(std::move(buf));
        } else {
          v = eval(*s.expr);
        }
        if (!s.attr.empty()) {
          const Value* ns = lookup(s.targets[0]);
          if (!ns || ns->kind != Value::Kind::Namespace)
            render_fail("cannot assign attribute '" + s.attr + "' on a non-namespace object '" +
                        s.targets[0] + "'");
          ns->dict->set(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          frames_[size_t(current_)].set(s.targets[0], std::move(v));
        } else {
          const List items = iterate(v);
          if (items.size() != s.targets.size())
            render_fail("cannot unpack " + std::to_string(items.size()) + " values into " +
                        std::to_string(s.targets.size()) + " names");
          for (size_t k = 0; k < items.size(); ++k)
            frames_[size_t(current_)].set(s.targets[k], items[k]);
        }
        break;
      }
      case StmtKind::Macro: {
        Value m;
        m.kind = Value::Kind::Macro;
        m.macro = std::make_shared<const Macro>(Macro{s.macro.get(), 0});
        frames_[size_t(current_)].set(s.macro->name, std::move(m));
        break;
      }
      case StmtKind::CallBlock: {
        Value caller;
        caller.kind = Value::Kind::Macro;
        caller.macro = std::make_shared<const Macro>(Macro{s.macro.get(), current_});
        const Expr& call = *s.expr;
        Value callee = eval(*call.a);
        if (callee.kind != Value::Kind::Macro) render_fail("{% call %} needs a macro");
        append_str(*out_, call_macro(*callee.macro, eval_args(call), &caller));
        break;
      }
      case StmtKind::Break:
        return Flow::Break;
      case StmtKind::Continue:
        return Flow::Continue;
      case StmtKind::Generation: {
        // transformers renders the body as a call block: its own scope.
        const ScopedFrame scope(*this, current_);
        exec(s.body);
        break;
      }
    }
  }
  return Flow::Normal;
}

Renderer::Flow Renderer::exec_for(const Stmt& s) {
  const Value seq = eval(*s.expr);
  List owned;
  const List* items;
  if (seq.kind == Value::Kind::List && !s.cond) {
    items = seq.list.get();
  } else {
    owned = iterate(seq);
    items = &owned;
  }
  auto bind = [&](Frame& f, const Value& item) {
    if (s.targets.size() == 1) {
      f.set(s.targets[0], item);
      return;
    }
    const List parts = iterate(item);
    if (parts.size() != s.targets.size())
      render_fail("cannot unpack " + std::to_string(parts.size()) + " values into " +
                  std::to_string(s.targets.size()) + " loop variables");
    for (size_t k = 0; k < parts.size(); ++k) f.set(s.targets[k], parts[k]);
  };
  const int outer = current_;
  if (s.cond) {
    // The loop filter sees the loop variables, and loop.length counts what it keeps.
    List kept;
    for (const Value& item : *items) {
      ScopedFrame turn(*this, outer);
      bind(turn.frame(), item);
      if (eval(*s.cond).truthy()) kept.push_back(item);
    }
    owned = std::move(kept);
    items = &owned;
  }
  if (items->empty()) {
    const ScopedFrame scope(*this, outer);
    exec(s.else_body);
    return Flow::Normal;
  }
  auto state = std::make_shared<LoopState>();
  state->items = items;
  state->length = int64_t(items->size());
  // loop.depth counts recursive calls of one loop (unsupported), not nesting.
  state->depth = 1;
  Value loop_value;
  loop_value.kind = Value::Kind::Loop;
  loop_value.loop = state;
  for (size_t k = 0; k < items->size(); ++k) {
    state->index0 = int64_t(k);
    ScopedFrame turn(*this, outer);
    turn.frame().vars.emplace_back("loop", loop_value);
    bind(turn.frame(), (*items)[k]);
    if (exec(s.body) == Flow::Break) break;
  }
  return Flow::Normal;
}

Args Renderer::eval_args(const Expr& e) {
  Args a;
  a.pos.reserve(e.args.size());
  for (const ExprPtr& x : e.args) a.pos.push_back(eval(*x));
  for (const auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x));
  return a;
}

Value Renderer::call_macro(const Macro& m, Args args, const Value* caller) {
  const MacroDef& d = *m.def;
  if (args.pos.size() > d.params.size())
    render_fail("macro '" + d.name + "' takes " + std::to_string(d.params.size()) +
                " arguments, given " + std::to_string(args.pos.size()));
  const int saved = current_;
  std::string buf;
  std::string* saved_out = out_;
  const int frame = push_frame(m.scope);
  current_ = frame;
  try {
    for (size_t k = 0; k < d.params.size(); ++k) {
      Value v;
      bool have = false;
      if (k < args.pos.size()) {
        v = std::move(args.pos[k]);
        have = true;
      }
      for (auto& [name, kv] : args.kw)
        if (name == d.params[k]) {
          if (have) render_fail("macro '" + d.name + "' got multiple values for '" + name + "'");
          v = std::move(kv);
          have = true;
        }
      if (!have) {
        if (d.defaults[k])
          v = eval(*d.defaults[k]);
        else
          v = Value::undefined("parameter '" + d.params[k] + "' was not provided");
      }
      frames_[size_t(frame)].set(d.params[k], std::move(v));
    }
    for (const auto& [name, kv] : args.kw) {
      bool known = false;
      for (const auto& p : d.params) known |= p == name;
      if (!known) render_fail("macro '" + d.name + "' takes no keyword argument '" + name + "'");
    }
    if (caller) frames_[size_t(frame)].set("caller", *caller);
    out_ = &buf;
    exec(d.body);
  } catch (...) {
    out_ = saved_out;
    pop_frame();
    current_ = saved;
    throw;
  }
  out_ = saved_out;
  pop_frame();
  current_ = saved;
  return Value::string(std::move(buf));
}

Value Renderer::eval_call(const Expr& e) {
  const Expr& callee = *e.a;
  if (callee.kind == ExprKind::GetAttr) {
    const Value obj = eval(*callee.a);
    return call_method(*this, obj, callee.name, eval_args(e));
  }
  Value f;
  if (callee.kind == ExprKind::Name) {
    if (const Value* v = lookup(callee.name)) {
      f = *v;
    } else if (known_global(callee.name)) {
      return call_global(*this, callee.name, eval_args(e));
    } else {
      render_fail("'" + callee.name + "' is undefined");
    }
  } else {
    f = eval(callee);
  }
  if (f.kind == Value::Kind::Macro) return call_macro(*f.macro, eval_args(e), nullptr);
  if (f.kind == Value::Kind::Global) return call_global(*this, f.s, eval_args(e));
  if (f.is_undefined()) undefined_fail(f);
  render_fail(std::string("'") + type_name(f) + "' object is not callable");
}

Value Renderer::eval(const Expr& e) {
  switch (e.kind) {
    case ExprKind::Literal:
      return e.value;
    case ExprKind::Name: {
      if (const Value* v = lookup(e.name)) return *v;
      if (known_global(e.name)) {
        Value g;
        g.kind = Value::Kind::Global;
        g.s = e.name;
        return g;
      }
      return undefined_name(e.name);
    }
    case ExprKind::List: {
      List l;
      l.reserve(e.args.size());
      for (const ExprPtr& x : e.args) l.push_back(eval(*x));
      return Value::make_list(std::move(l));
    }
    case ExprKind::DictLit: {
      Dict d;
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        Value key = eval(*e.args[k]);
        if (!key.is_string()) render_fail("unsupported construct: a dict key that is not a string");
        d.set(std::move(key.s), eval(*e.args[k + 1]));
      }
      return Value::make_dict(std::move(d));
    }
    case ExprKind::GetAttr: {
      if (e.a->kind == ExprKind::Name) {
        // The common `message.content`: no copy of the whole message.
        if (const Value* v = lookup(e.a->name)) return getattr(*v, e.name);
      }
      return getattr(eval(*e.a), e.name);
    }
    case ExprKind::GetItem: {
      const Value key = eval(*e.b);
      if (e.a->kind == ExprKind::Name) {
        if (const Value* v = lookup(e.a->name)) return getitem(*v, key);
      }
      return getitem(eval(*e.a), key);
    }
    case ExprKind::Slice: {
      const Value obj = eval(*e.a);
      Value parts[3];
      for (int k = 0; k < 3; ++k)
        parts[k] = e.args[size_t(k)] ? eval(*e.args[size_t(k)]) : Value::none();
      if (obj.is_undefined()) undefined_fail(obj);
      if (obj.kind == Value::Kind::List) {
        List l;
        for (int64_t k :
             slice_positions(int64_t(obj.list->size()), &parts[0], &parts[1], &parts[2]))
          l.push_back((*obj.list)[size_t(k)]);
        return Value::make_list(std::move(l));
      }
      if (obj.is_string()) {
        const std::u32string u = utf8_decode(obj.s);
        std::u32string r;
        for (int64_t k : slice_positions(int64_t(u.size()), &parts[0], &parts[1], &parts[2]))
          r += u[size_t(k)];
        return Value::string(utf8_encode(r));
      }
      return Value::undefined(std::string(type_name(obj)) + " object is not subscriptable");
    }
    case ExprKind::Call:
      return eval_call(e);
    case ExprKind::Filter:
      return apply_filter(e.name, eval(*e.a), eval_args(e), e.pos);
    case ExprKind::Test: {
      const bool r = apply_test(e.name, eval(*e.a), eval_args(e), e.pos);
      return Value::boolean(r != e.negated);
    }
    case ExprKind::Not:
      return Value::boolean(!eval(*e.a).truthy());
    case ExprKind::Neg:
    case ExprKind::Pos: {
      const Value v = eval(*e.a);
      if (v.is_undefined()) undefined_fail(v);
      const bool neg = e.kind == ExprKind::Neg;
      if (v.kind == Value::Kind::Float) return Value::number(neg ? -v.f : v.f);
      if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) {
        const int64_t x = v.kind == Value::Kind::Bool ? v.b : v.i;
        return Value::integer(neg ? -x : x);
      }
      render_fail(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" +
                  type_name(v) + "'");
    }
    case ExprKind::Binary: {
      if (e.name == "~") {
        std::string s = to_str(eval(*e.a));
        append_str(s, eval(*e.b));
        return Value::string(std::move(s));
      }
      const Value a = eval(*e.a);
      const Value b = eval(*e.b);
      if (e.name == "+" && a.is_string() && b.is_string()) {
        Value r = a;
        r.s += b.s;
        return r;
      }
      return arith(e.name, a, b);
    }
    case ExprKind::Compare: {
      const Value a = eval(*e.a);
      const Value b = eval(*e.b);
      const std::string& op = e.name;
      if (op == "==") return Value::boolean(equal(a, b));
      if (op == "!=") return Value::boolean(!equal(a, b));
      if (op == "in") return Value::boolean(contains(b, a));
      if (op == "notin") return Value::boolean(!contains(b, a));
      if (a.is_undefined()) undefined_fail(a);
      if (b.is_undefined()) undefined_fail(b);
      if (op == "<") return Value::boolean(less(a, b));
      if (op == ">") return Value::boolean(less(b, a));
      if (op == "<=") return Value::boolean(!less(b, a));
      return Value::boolean(!less(a, b));  // >=
    }
    case ExprKind::And: {
      Value a = eval(*e.a);
      if (!a.truthy()) return a;
      return eval(*e.b);
    }
    case ExprKind::Or: {
      Value a = eval(*e.a);
      if (a.truthy()) return a;
      return eval(*e.b);
    }
    case ExprKind::Cond: {
      if (eval(*e.a).truthy()) return eval(*e.b);
      if (e.c) return eval(*e.c);
      return Value::undefined(
          "the inline if-expression evaluated to false and no else section was defined");
    }
  }
  render_fail("unknown expression");
}

}  // namespace tpinfer::jinja
