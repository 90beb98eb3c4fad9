// Lexer and parser for the Jinja2 subset of chat templates, with the
// environment transformers compiles them in: trim_blocks and lstrip_blocks on,
// the loopcontrols extension (break, continue), a single trailing newline of
// the source dropped (jinja2's keep_trailing_newline=False).
#include <algorithm>
#include <charconv>
#include <set>

#include "text/chat_template_error.hpp"
#include "text/jinja_ast.hpp"

namespace tpinfer::jinja {

namespace {

enum class T { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Tok {
  T type;
  std::string s;
  int64_t i = 0;
  double f = 0;
  size_t off = 0;
};

const char* kWs = " \t\n\r\f\v";

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < src_.size(); ++k)
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
  }

  Pos pos_of(size_t off) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), off);
    const size_t line = size_t(it - line_starts_.begin());
    const size_t ls = line_starts_[line - 1];
    // Columns count characters, not bytes, as an editor shows them.
    int col = 1;
    for (size_t k = ls; k < off && k < src_.size(); ++k) col += (src_[k] & 0xc0) != 0x80;
    return {int(line), col};
  }

  [[noreturn]] void fail(size_t off, const std::string& what) const {
    const Pos p = pos_of(off);
    throw ChatTemplateError("chat template line " + std::to_string(p.line) + ":" +
                            std::to_string(p.col) + ": " + what);
  }

  std::vector<Tok> run() {
    size_t pos = 0;
    bool strip_next = false;
    bool line_starting = true;
    for (;;) {
      size_t p = pos;
      for (;;) {
        p = src_.find('{', p);
        if (p == std::string::npos || p + 1 >= src_.size()) {
          p = std::string::npos;
          break;
        }
        const char k = src_[p + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++p;
      }
      std::string text = src_.substr(pos, p == std::string::npos ? std::string::npos : p - pos);
      size_t text_off = pos;
      if (strip_next) {
        const size_t f = text.find_first_not_of(kWs);
        const size_t cut = f == std::string::npos ? text.size() : f;
        text.erase(0, cut);
        text_off += cut;
        strip_next = false;
      }
      if (p == std::string::npos) {
        emit_data(text, text_off);
        break;
      }
      const char kind = src_[p + 1];
      const char sign = p + 2 < src_.size() ? src_[p + 2] : 0;
      if (sign == '-') {
        const size_t l = text.find_last_not_of(kWs);
        text.resize(l == std::string::npos ? 0 : l + 1);
      } else if (kind != '{' && sign != '+') {
        // lstrip_blocks: a block or comment tag alone on its line after
        // indentation takes the indentation with it.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            text.find_first_not_of(" \t\f\v", l_pos) == std::string::npos)
          text.resize(l_pos);
      }
      emit_data(text, text_off);
      size_t q = p + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t e = src_.find("#}", q);
        if (e == std::string::npos) fail(p, "unclosed comment '{#'");
        size_t after = e + 2;
        if (e > q && src_[e - 1] == '-') {
          strip_next = true;
          line_starting = false;
        } else {
          after = trim_newline(after, e > q && src_[e - 1] == '+');
          line_starting = after > 0 && src_[after - 1] == '\n';
        }
        pos = after;
        continue;
      }
      if (kind == '%' && is_raw(q)) {
        pos = lex_raw(p, q, strip_next, line_starting);
        continue;
      }
      toks_.push_back({kind == '{' ? T::VarBegin : T::BlockBegin, "", 0, 0, p});
      pos = lex_tag(q, kind == '{', strip_next, line_starting, p);
    }
    toks_.push_back({T::Eof, "", 0, 0, src_.size()});
    return std::move(toks_);
  }

 private:
  void emit_data(const std::string& text, size_t off) {
    if (!text.empty()) toks_.push_back({T::Data, text, 0, 0, off});
  }

  // trim_blocks: the first newline after a block or comment tag goes.
  size_t trim_newline(size_t after, bool plus) const {
    if (!plus && after < src_.size() && src_[after] == '\n') return after + 1;
    return after;
  }

  bool is_raw(size_t q) const {
    size_t k = q;
    while (k < src_.size() && is_ws(src_[k])) ++k;
    if (src_.compare(k, 3, "raw") != 0) return false;
    k += 3;
    if (k < src_.size() && (isalnum((unsigned char)src_[k]) || src_[k] == '_')) return false;
    return true;
  }

  size_t lex_raw(size_t tag, size_t q, bool& strip_next, bool& line_starting) {
    size_t k = src_.find("%}", q);
    if (k == std::string::npos) fail(tag, "unclosed '{% raw %}'");
    size_t body = k + 2;
    const bool strip_body_start = src_[k - 1] == '-';
    // Find {% endraw %} with any whitespace control.
    size_t e = body;
    size_t end_open = std::string::npos, end_close = 0;
    char end_sign = 0;
    while ((e = src_.find("{%", e)) != std::string::npos) {
      size_t m = e + 2;
      char sg = 0;
      if (m < src_.size() && (src_[m] == '-' || src_[m] == '+')) sg = src_[m++];
      while (m < src_.size() && is_ws(src_[m])) ++m;
      if (src_.compare(m, 6, "endraw") == 0) {
        m += 6;
        while (m < src_.size() && is_ws(src_[m])) ++m;
        const bool dash = m < src_.size() && (src_[m] == '-' || src_[m] == '+');
        const size_t c = m + (dash ? 1 : 0);
        if (src_.compare(c, 2, "%}") == 0) {
          end_open = e;
          end_close = c + 2;
          end_sign = sg;
          strip_next = dash && src_[m] == '-';
          if (!strip_next) end_close = trim_newline(end_close, dash);
          break;
        }
      }
      e += 2;
    }
    if (end_open == std::string::npos) fail(tag, "missing '{% endraw %}'");
    std::string text = src_.substr(body, end_open - body);
    if (strip_body_start) {
      const size_t f = text.find_first_not_of(kWs);
      text.erase(0, f == std::string::npos ? text.size() : f);
    }
    if (end_sign == '-') {
      const size_t l = text.find_last_not_of(kWs);
      text.resize(l == std::string::npos ? 0 : l + 1);
    } else if (end_sign != '+') {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if (l_pos > 0 && l_pos < text.size() &&
          text.find_first_not_of(" \t\f\v", l_pos) == std::string::npos)
        text.resize(l_pos);
    }
    emit_data(text, body);
    line_starting = src_[end_close - 1] == '\n';
    return end_close;
  }

  // Lexes the inside of {{ }} or {% %} from q; returns the offset after its end.
  size_t lex_tag(size_t q, bool var, bool& strip_next, bool& line_starting, size_t tag) {
    int depth = 0;
    size_t k = q;
    for (;;) {
      while (k < src_.size() && is_ws(src_[k])) ++k;
      if (k >= src_.size()) fail(tag, var ? "unclosed '{{'" : "unclosed '{%'");
      if (depth == 0) {
        const char* end = var ? "}}" : "%}";
        size_t after = 0;
        bool dash = false, plus = false;
        if (src_.compare(k, 2, end) == 0) {
          after = k + 2;
        } else if (src_[k] == '-' && src_.compare(k + 1, 2, end) == 0) {
          after = k + 3;
          dash = true;
        } else if (!var && src_[k] == '+' && src_.compare(k + 1, 2, end) == 0) {
          after = k + 3;
          plus = true;
        }
        if (after) {
          toks_.push_back({var ? T::VarEnd : T::BlockEnd, "", 0, 0, k});
          if (dash) {
            strip_next = true;
            line_starting = false;
          } else {
            if (!var) after = trim_newline(after, plus);
            line_starting = after > 0 && src_[after - 1] == '\n';
          }
          return after;
        }
      }
      const char c = src_[k];
      if (isalpha((unsigned char)c) || c == '_') {
        size_t e = k;
        while (e < src_.size() && (isalnum((unsigned char)src_[e]) || src_[e] == '_')) ++e;
        toks_.push_back({T::Name, src_.substr(k, e - k), 0, 0, k});
        k = e;
      } else if (isdigit((unsigned char)c)) {
        k = lex_number(k);
      } else if (c == '\'' || c == '"') {
        k = lex_string(k);
      } else {
        static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (src_.compare(k, 2, t) == 0) op = t;
        if (op.empty()) {
          if (std::string_view("+-/*%~[](){}=<>,.:|;").find(c) == std::string_view::npos)
            fail(k, std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") --depth;
        toks_.push_back({T::Op, op, 0, 0, k});
        k += op.size();
      }
    }
  }

  size_t lex_number(size_t k) {
    size_t e = k;
    std::string digits;
    auto take_digits = [&] {
      while (e < src_.size() && (isdigit((unsigned char)src_[e]) || src_[e] == '_')) {
        if (src_[e] != '_') digits += src_[e];
        ++e;
      }
    };
    take_digits();
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && isdigit((unsigned char)src_[e + 1])) {
      is_float = true;
      digits += '.';
      ++e;
      take_digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t m = e + 1;
      if (m < src_.size() && (src_[m] == '+' || src_[m] == '-')) ++m;
      if (m < src_.size() && isdigit((unsigned char)src_[m])) {
        is_float = true;
        digits += 'e';
        digits.append(src_, e + 1, m - e - 1);
        e = m;
        take_digits();
      }
    }
    Tok t{is_float ? T::Float : T::Int, digits, 0, 0, k};
    if (is_float) {
      t.f = std::strtod(digits.c_str(), nullptr);
    } else {
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), t.i);
      if (r.ec != std::errc()) fail(k, "integer literal " + digits + " is out of range");
    }
    toks_.push_back(t);
    return e;
  }

  // Python's unicode-escape decoding, as jinja2 unescapes string literals.
  size_t lex_string(size_t k) {
    const char q = src_[k];
    std::string out;
    size_t e = k + 1;
    for (;;) {
      if (e >= src_.size()) fail(k, "unterminated string literal");
      const char c = src_[e];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++e;
        continue;
      }
      if (e + 1 >= src_.size()) fail(k, "unterminated string literal");
      const char n = src_[e + 1];
      e += 2;
      switch (n) {
        case '\n':
          break;  // line continuation
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t len = n == 'x' ? 2 : n == 'u' ? 4 : 8;
          if (e + len > src_.size()) fail(e - 2, "truncated \\" + std::string(1, n) + " escape");
          uint32_t cp = 0;
          for (size_t m = 0; m < len; ++m) {
            const char h = src_[e + m];
            if (!isxdigit((unsigned char)h))
              fail(e - 2, "truncated \\" + std::string(1, n) + " escape");
            cp = cp * 16 + uint32_t(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
          }
          if (cp > 0x10ffff) fail(e - 2, "illegal Unicode character in escape");
          utf8_append(out, char32_t(cp));
          e += len;
          break;
        }
        case 'N':
          fail(e - 2, "unsupported construct '\\N{...}' escape in a string literal");
        default:
          if (n >= '0' && n <= '7') {
            uint32_t cp = uint32_t(n - '0');
            for (int m = 0; m < 2 && e < src_.size() && src_[e] >= '0' && src_[e] <= '7'; ++m, ++e)
              cp = cp * 8 + uint32_t(src_[e] - '0');
            utf8_append(out, char32_t(cp));
          } else {
            // Python keeps an unknown escape as written.
            out += '\\';
            out += n;
          }
      }
    }
    toks_.push_back({T::String, out, 0, 0, k});
    return e + 1;
  }

  const std::string& src_;
  std::vector<size_t> line_starts_;
  std::vector<Tok> toks_;
};

// Statements jinja2 has that the renderer does not, refused by name.
const std::set<std::string> kUnsupportedStatements = {
    "extends",    "block", "include",   "import", "from",  "with", "filter",
    "autoescape", "trans", "pluralize", "do",     "print", "debug"};

class Parser {
 public:
  Parser(const Lexer& lx, std::vector<Tok> toks) : lx_(lx), t_(std::move(toks)) {}

  Template run() {
    Template tpl;
    std::string end;
    tpl.body = parse_body({}, &end);
    for (const auto& [name, off] : calls_)
      if (!macros_.count(name)) lx_.fail(off, "unsupported function '" + name + "()'");
    return tpl;
  }

 private:
  const Tok& cur() const { return t_[i_]; }
  const Tok& peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  Pos pos() const { return lx_.pos_of(cur().off); }
  bool is_op(const char* op) const { return cur().type == T::Op && cur().s == op; }
  bool is_name(const char* n) const { return cur().type == T::Name && cur().s == n; }
  [[noreturn]] void fail(const std::string& what) const { lx_.fail(cur().off, what); }
  std::string describe(const Tok& t) const {
    switch (t.type) {
      case T::Eof:
        return "end of template";
      case T::VarEnd:
        return "'}}'";
      case T::BlockEnd:
        return "'%}'";
      case T::Data:
        return "text";
      default:
        return "'" + t.s + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', found " + describe(cur()));
    ++i_;
  }
  std::string expect_name() {
    if (cur().type != T::Name) fail("expected a name, found " + describe(cur()));
    return t_[i_++].s;
  }
  void expect_block_end() {
    if (cur().type != T::BlockEnd) fail("expected '%}', found " + describe(cur()));
    ++i_;
  }

  // Statements until a block whose keyword is in `ends`; leaves the parser
  // after that keyword (stored in *end).
  Body parse_body(const std::set<std::string>& ends, std::string* end) {
    Body body;
    for (;;) {
      const Tok& t = cur();
      if (t.type == T::Eof) {
        if (!ends.empty()) {
          std::string closing = *ends.begin();
          for (const std::string& e : ends)
            if (e.rfind("end", 0) == 0) closing = e;
          fail("missing '{% " + closing + " %}'");
        }
        return body;
      }
      if (t.type == T::Data) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Text;
        s->pos = pos();
        s->text = t.s;
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.type == T::VarBegin) {
        ++i_;
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Output;
        s->pos = pos();
        s->expr = parse_expression();
        if (cur().type != T::VarEnd) fail("expected '}}', found " + describe(cur()));
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.type != T::BlockBegin) fail("unexpected " + describe(t));
      block_off_ = t.off;
      ++i_;
      if (cur().type != T::Name) fail("expected a statement name, found " + describe(cur()));
      const std::string kw = cur().s;
      if (ends.count(kw)) {
        ++i_;
        *end = kw;
        return body;
      }
      body.push_back(parse_statement());
    }
  }

  StmtPtr parse_statement() {
    const std::string kw = cur().s;
    const size_t off = block_off_;
    auto s = std::make_unique<Stmt>();
    s->pos = lx_.pos_of(off);
    ++i_;
    if (kw == "if") {
      s->kind = StmtKind::If;
      ExprPtr cond = parse_expression();
      for (;;) {
        expect_block_end();
        std::string end;
        Body b = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "endif") break;
        if (end == "else") {
          expect_block_end();
          s->branches.emplace_back(nullptr, parse_body({"endif"}, &end));
          break;
        }
        cond = parse_expression();
      }
      expect_block_end();
    } else if (kw == "for") {
      s->kind = StmtKind::For;
      s->targets = parse_targets();
      if (!is_name("in")) fail("expected 'in', found " + describe(cur()));
      ++i_;
      s->expr = parse_tuple(false);
      if (is_name("if")) {
        ++i_;
        s->cond = parse_expression();
      }
      if (is_name("recursive")) fail("unsupported construct 'recursive' loop");
      expect_block_end();
      ++loop_depth_;
      std::string end;
      s->body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &end);
      }
      expect_block_end();
    } else if (kw == "set") {
      s->kind = StmtKind::Set;
      if (cur().type == T::Name && peek().type == T::Op && peek().s == ".") {
        s->targets.push_back(t_[i_].s);
        i_ += 2;
        s->attr = expect_name();
      } else {
        s->targets = parse_targets();
      }
      if (is_op("=")) {
        ++i_;
        s->expr = parse_tuple(true);
        expect_block_end();
      } else if (cur().type == T::BlockEnd) {
        if (s->targets.size() != 1 || !s->attr.empty()) fail("a block set takes one name");
        ++i_;
        s->block_set = true;
        std::string end;
        s->body = parse_body({"endset"}, &end);
        expect_block_end();
      } else if (is_op("|")) {
        fail("unsupported construct '{% set ... | filter %}' block");
      } else {
        fail("expected '=', found " + describe(cur()));
      }
    } else if (kw == "macro") {
      s->kind = StmtKind::Macro;
      auto m = std::make_shared<MacroDef>();
      m->name = expect_name();
      macros_.insert(m->name);
      parse_params(*m);
      expect_block_end();
      std::string end;
      m->body = parse_body({"endmacro"}, &end);
      if (cur().type == T::Name && cur().s == m->name) ++i_;
      expect_block_end();
      s->macro = std::move(m);
    } else if (kw == "call") {
      s->kind = StmtKind::CallBlock;
      auto m = std::make_shared<MacroDef>();
      m->name = "caller";
      if (is_op("(")) parse_params(*m);
      s->expr = parse_expression();
      if (s->expr->kind != ExprKind::Call) fail("expected a call after '{% call %}'");
      expect_block_end();
      std::string end;
      m->body = parse_body({"endcall"}, &end);
      expect_block_end();
      s->macro = std::move(m);
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) lx_.fail(off, "'{% " + kw + " %}' outside of a loop");
      s->kind = kw == "break" ? StmtKind::Break : StmtKind::Continue;
      expect_block_end();
    } else if (kw == "generation") {
      s->kind = StmtKind::Generation;
      expect_block_end();
      std::string end;
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
    } else if (kUnsupportedStatements.count(kw)) {
      lx_.fail(off, "unsupported construct '{% " + kw + " %}'");
    } else if (kw.rfind("end", 0) == 0 || kw == "elif" || kw == "else") {
      lx_.fail(off, "unexpected '{% " + kw + " %}'");
    } else {
      lx_.fail(off, "unknown statement '{% " + kw + " %}'");
    }
    return s;
  }

  void parse_params(MacroDef& m) {
    expect_op("(");
    while (!is_op(")")) {
      if (!m.params.empty()) expect_op(",");
      if (is_op(")")) break;
      m.params.push_back(expect_name());
      if (is_op("=")) {
        ++i_;
        m.defaults.push_back(parse_expression());
      } else {
        m.defaults.push_back(nullptr);
      }
    }
    ++i_;
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    const bool paren = is_op("(");
    if (paren) ++i_;
    names.push_back(expect_name());
    while (is_op(",")) {
      ++i_;
      if (cur().type != T::Name) break;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  ExprPtr node(ExprKind k, size_t off) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = lx_.pos_of(off);
    return e;
  }

  // An expression, or a bare tuple `a, b` (as set and for take).
  ExprPtr parse_tuple(bool with_condexpr) {
    const size_t off = cur().off;
    ExprPtr first = with_condexpr ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = node(ExprKind::List, off);
    t->args.push_back(std::move(first));
    while (is_op(",")) {
      ++i_;
      if (cur().type == T::BlockEnd || cur().type == T::VarEnd || is_name("if")) break;
      t->args.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    const size_t off = cur().off;
    ExprPtr e = parse_or();
    while (is_name("if")) {
      ++i_;
      auto c = node(ExprKind::Cond, off);
      c->a = parse_or();
      c->b = std::move(e);
      if (is_name("else")) {
        ++i_;
        c->c = parse_expression();
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto n = node(ExprKind::Or, cur().off);
      ++i_;
      n->a = std::move(e);
      n->b = parse_and();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto n = node(ExprKind::And, cur().off);
      ++i_;
      n->a = std::move(e);
      n->b = parse_not();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto n = node(ExprKind::Not, cur().off);
      ++i_;
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    for (;;) {
      std::string op;
      const size_t off = cur().off;
      if (cur().type == T::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" ||
                                  cur().s == ">" || cur().s == "<=" || cur().s == ">=")) {
        op = cur().s;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().type == T::Name && peek().s == "in") {
        op = "notin";
        i_ += 2;
      } else {
        break;
      }
      auto n = node(ExprKind::Compare, off);
      n->name = op;
      n->a = std::move(e);
      n->b = parse_math1();
      e = std::move(n);
      if (cur().type == T::Op && (cur().s == "==" || cur().s == "!=" || cur().s == "<" ||
                                  cur().s == ">" || cur().s == "<=" || cur().s == ">="))
        fail("unsupported construct: chained comparison (a < b < c)");
    }
    return e;
  }

  ExprPtr binary(ExprPtr a, const std::string& op, ExprPtr b, size_t off) {
    auto n = node(ExprKind::Binary, off);
    n->name = op;
    n->a = std::move(a);
    n->b = std::move(b);
    return n;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().s;
      const size_t off = cur().off;
      ++i_;
      e = binary(std::move(e), op, parse_concat(), off);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const size_t off = cur().off;
      ++i_;
      e = binary(std::move(e), "~", parse_math2(), off);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().s;
      const size_t off = cur().off;
      ++i_;
      e = binary(std::move(e), op, parse_pow(), off);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const size_t off = cur().off;
      ++i_;
      e = binary(std::move(e), "**", parse_unary(true), off);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    const size_t off = cur().off;
    if (is_op("-") || is_op("+")) {
      e = node(is_op("-") ? ExprKind::Neg : ExprKind::Pos, off);
      ++i_;
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Tok& t = cur();
    const size_t off = t.off;
    if (t.type == T::Name) {
      ++i_;
      if (t.s == "true" || t.s == "True") return literal(Value::boolean(true), off);
      if (t.s == "false" || t.s == "False") return literal(Value::boolean(false), off);
      if (t.s == "none" || t.s == "None") return literal(Value::none(), off);
      name_off_ = off;
      auto n = node(ExprKind::Name, off);
      n->name = t.s;
      return n;
    }
    if (t.type == T::String) {
      std::string s;
      while (cur().type == T::String) s += t_[i_++].s;
      return literal(Value::string(std::move(s)), off);
    }
    if (t.type == T::Int) {
      ++i_;
      return literal(Value::integer(t.i), off);
    }
    if (t.type == T::Float) {
      ++i_;
      return literal(Value::number(t.f), off);
    }
    if (is_op("(")) {
      ++i_;
      if (is_op(")")) {
        ++i_;
        return node(ExprKind::List, off);
      }
      ExprPtr e = parse_expression();
      if (is_op(",")) {
        auto tup = node(ExprKind::List, off);
        tup->args.push_back(std::move(e));
        while (is_op(",")) {
          ++i_;
          if (is_op(")")) break;
          tup->args.push_back(parse_expression());
        }
        e = std::move(tup);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++i_;
      auto l = node(ExprKind::List, off);
      while (!is_op("]")) {
        if (!l->args.empty()) expect_op(",");
        if (is_op("]")) break;
        l->args.push_back(parse_expression());
      }
      ++i_;
      return l;
    }
    if (is_op("{")) {
      ++i_;
      auto d = node(ExprKind::DictLit, off);
      while (!is_op("}")) {
        if (!d->args.empty()) expect_op(",");
        if (is_op("}")) break;
        d->args.push_back(parse_expression());
        expect_op(":");
        d->args.push_back(parse_expression());
      }
      ++i_;
      return d;
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr literal(Value v, size_t off) {
    auto n = node(ExprKind::Literal, off);
    n->value = std::move(v);
    return n;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      const size_t off = cur().off;
      if (is_op(".")) {
        ++i_;
        if (cur().type == T::Int) {
          auto n = node(ExprKind::GetItem, off);
          n->a = std::move(e);
          n->b = literal(Value::integer(cur().i), cur().off);
          ++i_;
          e = std::move(n);
          continue;
        }
        auto n = node(ExprKind::GetAttr, off);
        n->a = std::move(e);
        callee_name_off_ = cur().off;
        n->name = expect_name();
        e = std::move(n);
      } else if (is_op("[")) {
        ++i_;
        ExprPtr parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) parts[k] = parse_expression();
          if (k < 2 && is_op(":")) {
            slice = true;
            ++i_;
          } else {
            break;
          }
        }
        if (is_op(",")) fail("unsupported construct: tuple subscript");
        expect_op("]");
        if (slice) {
          auto n = node(ExprKind::Slice, off);
          n->a = std::move(e);
          for (auto& p : parts) n->args.push_back(std::move(p));
          e = std::move(n);
        } else {
          if (!parts[0]) fail("expected a subscript");
          auto n = node(ExprKind::GetItem, off);
          n->a = std::move(e);
          n->b = std::move(parts[0]);
          e = std::move(n);
        }
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  void parse_call_args(Expr& n) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("unsupported construct: '*' / '**' arguments");
      if (cur().type == T::Name && peek().type == T::Op && peek().s == "=") {
        std::string k = cur().s;
        i_ += 2;
        n.kwargs.emplace_back(std::move(k), parse_expression());
      } else {
        if (!n.kwargs.empty()) fail("positional argument after a keyword argument");
        n.args.push_back(parse_expression());
      }
    }
    ++i_;
  }

  ExprPtr parse_call(ExprPtr callee) {
    const size_t off = cur().off;
    auto n = node(ExprKind::Call, off);
    if (callee->kind == ExprKind::GetAttr) {
      if (!known_method(callee->name))
        lx_.fail(callee_name_off_, "unsupported method '." + callee->name + "()'");
    } else if (callee->kind == ExprKind::Name) {
      if (!known_global(callee->name) && callee->name != "caller")
        calls_.emplace_back(callee->name, name_off_);
    }
    n->a = std::move(callee);
    parse_call_args(*n);
    return n;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    for (;;) {
      if (is_op("|")) {
        ++i_;
        const size_t off = cur().off;
        auto n = node(ExprKind::Filter, off);
        n->name = expect_name();
        if (is_op(".")) fail("unsupported construct: dotted filter name");
        if (!known_filter(n->name)) lx_.fail(off, "unsupported filter '" + n->name + "'");
        n->a = std::move(e);
        if (is_op("(")) parse_call_args(*n);
        e = std::move(n);
      } else if (is_name("is")) {
        ++i_;
        auto n = node(ExprKind::Test, cur().off);
        if (is_name("not")) {
          n->negated = true;
          ++i_;
        }
        const size_t off = cur().off;
        n->name = expect_name();
        if (!known_test(n->name)) lx_.fail(off, "unsupported test 'is " + n->name + "'");
        n->a = std::move(e);
        if (is_op("(")) {
          parse_call_args(*n);
        } else if ((cur().type == T::Name || cur().type == T::String || cur().type == T::Int ||
                    cur().type == T::Float || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) fail("cannot chain multiple tests with 'is'");
          n->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(n);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  const Lexer& lx_;
  std::vector<Tok> t_;
  size_t i_ = 0;
  int loop_depth_ = 0;
  size_t block_off_ = 0;        // where the current {% tag starts
  size_t callee_name_off_ = 0;  // the last attribute name parsed (for method errors)
  size_t name_off_ = 0;         // the last variable name parsed (for function errors)
  std::set<std::string> macros_;
  std::vector<std::pair<std::string, size_t>> calls_;
};

}  // namespace

Template parse_template(const std::string& source) {
  // jinja2 reads \r\n and \r as \n, and drops one trailing newline.
  std::string src;
  src.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      src += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      src += source[k];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  Lexer lx(src);
  std::vector<Tok> toks = lx.run();
  Parser p(lx, std::move(toks));
  return p.run();
}

}  // namespace tpinfer::jinja
