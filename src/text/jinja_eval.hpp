#pragma once
// Renders a parsed template: statements, expressions, and the filters, tests,
// methods and globals of jinja2 (and transformers' environment) that chat
// templates use, with jinja2's semantics for each.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja_ast.hpp"
#include "text/jinja_value.hpp"

namespace tpinfer::jinja {

struct Macro {
  const MacroDef* def = nullptr;
  int scope = 0;  // the frame its body's free names resolve in
};

struct LoopState {
  const List* items = nullptr;
  int64_t index0 = 0;
  int64_t length = 0;
  int depth = 1;
};

// Arguments of a call, filter or test, evaluated.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

class Renderer {
 public:
  // `vars`: the template's variables (messages, add_generation_prompt, ...).
  Renderer(const Template& tpl, Dict vars);
  std::string render();

  // For the built-ins that call back (map, select, macros).
  Value eval(const Expr& e);
  Value call_macro(const Macro& m, Args args, const Value* caller);
  Value apply_filter(const std::string& name, const Value& v, Args args, Pos pos);
  bool apply_test(const std::string& name, const Value& v, const Args& args, Pos pos);

 private:
  enum class Flow { Normal, Break, Continue };
  struct Frame {
    std::vector<std::pair<std::string, Value>> vars;
    int parent = -1;
    const Value* find(const std::string& n) const {
      for (const auto& kv : vars)
        if (kv.first == n) return &kv.second;
      return nullptr;
    }
    void set(const std::string& n, Value v) {
      for (auto& kv : vars)
        if (kv.first == n) {
          kv.second = std::move(v);
          return;
        }
      vars.emplace_back(n, std::move(v));
    }
  };

  Flow exec(const Body& body);
  Flow exec_for(const Stmt& s);
  int push_frame(int parent);
  void pop_frame();
  // A frame (a loop turn, a block's or a macro's scope) made current for as
  // long as it lives: popped, and the frame before restored, however the
  // scope ends (a raise_exception unwinds through it).
  class ScopedFrame {
   public:
    ScopedFrame(Renderer& r, int parent) : r_(r), outer_(r.current_) {
      r.current_ = r.push_frame(parent);
    }
    ~ScopedFrame() {
      r_.pop_frame();
      r_.current_ = outer_;
    }
    ScopedFrame(const ScopedFrame&) = delete;
    ScopedFrame& operator=(const ScopedFrame&) = delete;
    Frame& frame() { return r_.frames_[size_t(r_.current_)]; }

   private:
    Renderer& r_;
    int outer_;
  };
  const Value* lookup(const std::string& name) const;
  Value eval_call(const Expr& e);
  Args eval_args(const Expr& e);

  const Template& tpl_;
  Dict vars_;
  std::vector<Frame> frames_;
  int depth_ = 0;  // frames_[0 .. depth_) live; frames_[depth_-1] is current
  int current_ = 0;
  std::string* out_ = nullptr;
};

// Python-level operations the renderer and built-ins share.
Value getattr(const Value& obj, const std::string& name);
Value getitem(const Value& obj, const Value& key);
Value call_method(Renderer& r, const Value& obj, const std::string& name, Args args);
Value call_global(Renderer& r, const std::string& name, Args args);
// Iterates v as a Python for loop does (dict: keys; str: characters).
List iterate(const Value& v);
[[noreturn]] void render_fail(const std::string& what);
[[noreturn]] void undefined_fail(const Value& undef);

}  // namespace tpinfer::jinja
