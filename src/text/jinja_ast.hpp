#pragma once
// The parsed form of a chat template: expressions and statements, with the
// line:column each came from. Filters, tests and methods are resolved to the
// renderer's own set at parse time, so a template the renderer cannot run is
// refused before any conversation is rendered.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja_value.hpp"

namespace tpinfer::jinja {

struct Pos {
  int line = 1;
  int col = 1;
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  Literal,  // value
  Name,     // name
  List,     // args (also tuples)
  DictLit,  // args: key, value, key, value, ...
  GetAttr,  // a.name
  GetItem,  // a[b]
  Slice,    // a[args0:args1:args2] (null parts absent)
  Call,     // a(args, kwargs); a method call when a is a GetAttr
  Filter,   // a | name(args, kwargs)
  Test,     // a is [not] name(args)
  Not,
  Neg,
  Pos,
  Binary,   // a op b: + - * / // % ** ~
  Compare,  // a op b: == != < <= > >= in notin
  And,
  Or,
  Cond,  // b if a else c
};

struct Expr {
  ExprKind kind;
  Pos pos;
  Value value;
  std::string name;      // Name, GetAttr, Filter, Test; Binary/Compare operator
  bool negated = false;  // Test: `is not`
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  Text,       // text
  Output,     // {{ expr }}
  If,         // branches
  For,        // targets in expr [if cond]: body [else else_body]
  Set,        // targets = expr, or attr_of.attr = expr; block form: body
  Macro,      // macro
  CallBlock,  // {% call expr %}body{% endcall %}: expr called with caller = body
  Break,
  Continue,
  Generation,  // transformers' {% generation %}: renders its body
};

struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null: required
  Body body;
  bool uses_caller = false;
};

struct Stmt {
  StmtKind kind;
  Pos pos;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // For: the `if` filter
  std::vector<std::string> targets;
  std::string attr;  // Set: ns.attr target (targets[0] is ns)
  bool block_set = false;
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: cond null for else
  Body body, else_body;
  std::shared_ptr<MacroDef> macro;  // Macro; CallBlock: the caller
};

struct Template {
  Body body;
};

// Parses `source` with transformers' environment (trim_blocks, lstrip_blocks,
// loopcontrols). Throws ChatTemplateError naming the construct and line:column.
Template parse_template(const std::string& source);

// The filters, tests, methods and globals the renderer knows.
bool known_filter(const std::string& name);
bool known_test(const std::string& name);
bool known_method(const std::string& name);
bool known_global(const std::string& name);

}  // namespace tpinfer::jinja
