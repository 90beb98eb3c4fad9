// The C++ chat-template renderer against jinja2 itself: every template under
// tests/data/chat_templates and the real templates of five model families
// (fetched with the tokenizers) times a set of conversations must render
// byte-identically to tools/render_chat_template.py (jinja2 with transformers'
// environment). Without python3-jinja2 the differential part skips; the
// hard-coded expectations and refusals below run regardless.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "text/chat_template.hpp"
#include "tokenizer_test_data.hpp"

namespace tpinfer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const fs::path kTemplates = test::kSourceRoot / "tests" / "data" / "chat_templates";
const fs::path kScript = test::kSourceRoot / "tools" / "render_chat_template.py";

json conversations() {
  return json::parse(test::slurp(kTemplates / "conversations.json"));
}

// A python3 that has jinja2 (Debian's python3-jinja2 is /usr/bin's), or "".
const std::string& python_with_jinja() {
  static const std::string found = [] {
    for (const char* py : {"/usr/bin/python3", "python3"}) {
      const std::string cmd = std::string(py) + " -c 'import jinja2' >/dev/null 2>&1";
      if (std::system(cmd.c_str()) == 0) return std::string(py);
    }
    return std::string();
  }();
  return found;
}

struct Case {
  std::string name;
  std::string tpl;
  json vars;
};

// jinja2's results for the cases: {"text": ...} or {"error": ...} each.
json render_python(const std::vector<Case>& cases) {
  fs::create_directories(TPINFER_TEST_TMP);
  const fs::path in = fs::path(TPINFER_TEST_TMP) / "chat_template_cases.json";
  const fs::path out = fs::path(TPINFER_TEST_TMP) / "chat_template_results.json";
  json j = json::array();
  for (const Case& c : cases) j.push_back({{"template", c.tpl}, {"vars", c.vars}});
  std::ofstream(in) << j.dump();
  const std::string cmd = python_with_jinja() + " " + kScript.string() + " --batch " + in.string() +
                          " > " + out.string();
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  return json::parse(test::slurp(out));
}

// transformers' variables for one conversation.
json vars_for(const json& messages, bool gen, const json& special,
              const json& extra = json::object()) {
  json v = {{"messages", messages},
            {"add_generation_prompt", gen},
            {"tools", nullptr},
            {"documents", nullptr}};
  for (auto it = special.begin(); it != special.end(); ++it) v[it.key()] = *it;
  for (auto it = extra.begin(); it != extra.end(); ++it) v[it.key()] = *it;
  return v;
}

std::vector<Case> cases_for(const std::string& name, const std::string& tpl, const json& special,
                            const std::vector<json>& extras = {json::object()}) {
  std::vector<Case> out;
  const json convs = conversations();
  for (auto it = convs.begin(); it != convs.end(); ++it)
    for (bool gen : {false, true})
      for (size_t e = 0; e < extras.size(); ++e)
        out.push_back(
            {name + "/" + it.key() + (gen ? "/gen" : "/nogen") + (e ? "/" + extras[e].dump() : ""),
             tpl, vars_for(*it, gen, special, extras[e])});
  return out;
}

struct Tally {
  int same_text = 0;
  int both_error = 0;
};

// Renders every case with C++ and compares with jinja2's result.
Tally differential(const std::vector<Case>& cases) {
  const json py = render_python(cases);
  EXPECT_EQ(py.size(), cases.size());
  Tally t;
  std::map<std::string, std::unique_ptr<ChatTemplate>> compiled;
  for (size_t k = 0; k < cases.size() && k < py.size(); ++k) {
    const Case& c = cases[k];
    auto& tpl = compiled[c.tpl];
    if (!tpl) tpl = std::make_unique<ChatTemplate>(c.tpl);
    std::string text, error;
    try {
      text = tpl->render_vars(c.vars);
    } catch (const ChatTemplateRenderError& e) {
      error = e.what();
    }
    if (py[k].contains("error")) {
      EXPECT_FALSE(error.empty()) << c.name << ": jinja2 failed ("
                                  << py[k]["error"].get<std::string>() << ") but C++ rendered:\n"
                                  << text;
      ++t.both_error;
    } else {
      EXPECT_TRUE(error.empty()) << c.name << ": C++ failed: " << error;
      EXPECT_EQ(text, py[k]["text"].get<std::string>()) << c.name;
      if (error.empty() && text == py[k]["text"].get<std::string>()) ++t.same_text;
    }
  }
  return t;
}

std::string render(const std::string& tpl, const json& vars = json::object()) {
  return ChatTemplate(tpl).render_vars(vars);
}

TEST(ChatTemplate, HardCodedExpectations) {
  const json msgs = json::parse(R"([{"role": "system", "content": " sys "},
                                    {"role": "user", "content": "héllo"}])");
  // Verified against jinja2 3.1 with transformers' environment.
  EXPECT_EQ(render("{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}\n{% endfor %}",
                   {{"messages", msgs}}),
            "<system>sys\n<user>héllo\n");
  EXPECT_EQ(
      render("{{ 1.0 }} {{ 1e16 }} {{ 10/3 }} {{ -7//2 }} {{ -7 % 3 }} {{ 2.5|round }} {{ none }} "
             "{{ true }} {{ x }}|{{ [1,'a',none] }} {{ {'k': \"it's\"} }}"),
      "1.0 1e+16 3.3333333333333335 -4 2 2.0 None True |[1, 'a', None] {'k': \"it's\"}");
  EXPECT_EQ(render("{% set x = 0 %}{% for i in [1,2] %}{{ x }}{% set x = i %}{% endfor %}{{ x }}"),
            "000");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}"
                   "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(render("a\n  {% if true %}\n  x\n  {% endif %}\nb\n"), "a\n  x\nb");
  EXPECT_EQ(
      render("{{ 'héllo'[::-1] }} {{ 'héllo'|length }} {{ 'x</think>y'.split('</think>')[-1] }}"),
      "olléh 5 y");
  EXPECT_EQ(render("{{ {'a': 'é', 'b': [1, 2.0, none]}|tojson }}"),
            "{\"a\": \"é\", \"b\": [1, 2.0, null]}");
  EXPECT_EQ(render("{{ {'a': [1]}|tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(render("{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}"
                   "{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "0246");
  EXPECT_EQ(
      render("{% macro m(a, b='x') %}[{{a}}{{b}}{{ caller() if caller is defined }}]{% endmacro %}"
             "{{ m(1) }}{% call m(2) %}in{% endcall %}"),
      "[1x][2xin]");
}

TEST(ChatTemplate, RaiseExceptionIsARenderError) {
  ChatTemplate t(
      "{% if messages|length == 0 %}{{ raise_exception('no messages: ' ~ 0) }}{% endif %}ok");
  EXPECT_EQ(t.render_vars({{"messages", {1}}}), "ok");
  try {
    t.render_vars({{"messages", json::array()}});
    FAIL() << "expected ChatTemplateRenderError";
  } catch (const ChatTemplateRenderError& e) {
    EXPECT_TRUE(e.raised);
    EXPECT_STREQ(e.what(), "no messages: 0");
    EXPECT_EQ(e.exit_code, kExitUsage);
  }
  // A type error on one conversation's data is also that conversation's error.
  ChatTemplate u("{{ messages[0].content + 1 }}");
  try {
    u.render_vars({{"messages", {{{"content", "x"}}}}});
    FAIL() << "expected ChatTemplateRenderError";
  } catch (const ChatTemplateRenderError& e) {
    EXPECT_FALSE(e.raised);
    EXPECT_STREQ(e.what(), "can only concatenate str (not \"int\") to str");
  }
  EXPECT_THROW(render("{{ nothing.attr }}"), ChatTemplateRenderError);
  EXPECT_THROW(render("{{ [1].append(2) }}"), ChatTemplateRenderError);
}

TEST(ChatTemplate, RenderSetsTransformersVariables) {
  ChatTemplate t(
      "{{ bos_token is defined }} {{ eos_token }} {{ tools }} {{ add_generation_prompt }} "
      "{{ messages|length }} {{ enable_thinking }}");
  ChatTemplateInput in;
  in.messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  in.add_generation_prompt = true;
  in.eos_token = "</s>";
  in.extra = {{"enable_thinking", false}};
  EXPECT_EQ(t.render(in), "False </s> None True 1 False");
}

TEST(ChatTemplate, UnsupportedConstructsAreRefusedAtParseTime) {
  const std::pair<const char*, const char*> cases[] = {
      {"{% extends 'base.html' %}", "line 1:1: unsupported construct '{% extends %}'"},
      {"ok\n  {% include 'x' %}", "line 2:3: unsupported construct '{% include %}'"},
      {"{% import 'm' as m %}", "unsupported construct '{% import %}'"},
      {"{% with a = 1 %}{% endwith %}", "unsupported construct '{% with %}'"},
      {"{% filter upper %}x{% endfilter %}", "unsupported construct '{% filter %}'"},
      {"{{ x|xmlattr }}", "line 1:6: unsupported filter 'xmlattr'"},
      {"{{ x\n  | wordwrap(3) }}", "line 2:5: unsupported filter 'wordwrap'"},
      {"{% if x is escaped %}{% endif %}", "line 1:12: unsupported test 'is escaped'"},
      {"{{ x.encode('utf-8') }}", "line 1:6: unsupported method '.encode()'"},
      {"{{ lipsum(2) }}", "line 1:4: unsupported function 'lipsum()'"},
      {"{% for x in y recursive %}{% endfor %}", "unsupported construct 'recursive' loop"},
      {"{{ f(*args) }}", "unsupported construct: '*' / '**' arguments"},
      {"{{ 1 < x < 3 }}", "chained comparison"},
      {"{% frobnicate %}", "line 1:1: unknown statement '{% frobnicate %}'"},
      {"{% break %}", "'{% break %}' outside of a loop"},
      {"{% if x %}unclosed", "missing '{% endif %}'"},
      {"{{ x + }}", "line 1:8: unexpected '}}'"},
      {"{{ 'unterminated }}", "unterminated string literal"},
  };
  for (const auto& [src, want] : cases) {
    try {
      ChatTemplate t(src);
      ADD_FAILURE() << "accepted: " << src;
    } catch (const ChatTemplateError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(want), std::string::npos) << src << " -> " << msg;
      EXPECT_EQ(msg.rfind("chat template line ", 0), 0u) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_EQ(e.exit_code, kExitUsage);
    }
  }
}

TEST(ChatTemplate, OwnTemplatesMatchJinja2) {
  if (python_with_jinja().empty())
    GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  const json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  std::vector<Case> cases;
  int templates = 0;
  for (const auto& entry : fs::directory_iterator(kTemplates)) {
    if (entry.path().extension() != ".jinja") continue;
    ++templates;
    auto c = cases_for(entry.path().filename().string(), test::slurp(entry.path()), special);
    cases.insert(cases.end(), c.begin(), c.end());
  }
  EXPECT_GE(templates, 7);
  const Tally t = differential(cases);
  std::cout << "own templates: " << cases.size() << " cases, " << t.same_text
            << " identical texts, " << t.both_error << " failing in both\n";
  // Most cases must render (errors agreeing is not enough coverage).
  EXPECT_GE(t.same_text, int(cases.size()) * 3 / 4);
}

struct Family {
  const char* dir;
  const char* label;
};
const Family kFamilies[] = {{"llama3", "Llama 3"},
                            {"llama3_1", "Llama 3.1"},
                            {"qwen3", "Qwen3"},
                            {"deepseek_v3", "DeepSeek-V3"},
                            {"gemma3", "Gemma 3"}};

fs::path config_path(const std::string& dir) {
  return test::real_tokenizer_file(dir).parent_path() / "tokenizer_config.json";
}

// The chat template and special tokens of a fetched tokenizer_config.json.
bool load_family(const std::string& dir, std::string* tpl, json* special) {
  const fs::path p = config_path(dir);
  if (!fs::exists(p)) return false;
  const json cfg = json::parse(test::slurp(p));
  *tpl = cfg.at("chat_template").get<std::string>();
  *special = json::object();
  for (const char* k : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (!cfg.contains(k) || cfg[k].is_null()) continue;
    (*special)[k] = cfg[k].is_object() ? cfg[k].at("content") : cfg[k];
  }
  return true;
}

TEST(ChatTemplate, RealTemplatesMatchJinja2) {
  if (python_with_jinja().empty())
    GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  int found = 0;
  for (const Family& f : kFamilies) {
    std::string tpl;
    json special;
    if (!load_family(f.dir, &tpl, &special)) {
      std::cout << f.label << ": " << config_path(f.dir) << " not fetched, skipped\n";
      continue;
    }
    ++found;
    std::vector<json> extras = {json::object()};
    if (std::string(f.dir) == "qwen3") extras.push_back({{"enable_thinking", false}});
    const auto cases = cases_for(f.label, tpl, special, extras);
    const Tally t = differential(cases);
    std::cout << f.label << ": " << cases.size() << " cases, " << t.same_text
              << " identical texts, " << t.both_error << " failing in both\n";
    EXPECT_GE(t.same_text, int(cases.size()) / 2) << f.label;
  }
  if (found == 0)
    GTEST_SKIP()
        << "no tokenizer_config.json fetched: run tools/tokenizer_fixtures/fetch_tokenizers.sh";
}

// Not a timed assertion: prints conversations rendered per second, one core.
TEST(ChatTemplate, RenderSpeed) {
  const json convs = conversations();
  int measured = 0;
  for (const Family& f : kFamilies) {
    if (std::string(f.dir) != "llama3_1" && std::string(f.dir) != "qwen3") continue;
    std::string src;
    json special;
    if (!load_family(f.dir, &src, &special)) continue;
    const ChatTemplate tpl(src);
    for (const char* conv : {"system_user", "many_turns"}) {
      ChatTemplateInput in;
      in.messages = convs.at(conv);
      in.add_generation_prompt = true;
      if (special.contains("bos_token")) in.bos_token = special["bos_token"].get<std::string>();
      if (special.contains("eos_token")) in.eos_token = special["eos_token"].get<std::string>();
      size_t n = 0, bytes = 0;
      const auto t0 = std::chrono::steady_clock::now();
      double secs = 0;
      while (secs < 0.5) {
        for (int k = 0; k < 200; ++k) bytes += tpl.render(in).size();
        n += 200;
        secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      EXPECT_GT(bytes, n);
      std::printf("%s template, %s (%zu messages): %.0f conversations/s on one core\n", f.label,
                  conv, in.messages.size(), double(n) / secs);
      ++measured;
    }
  }
  if (!measured) GTEST_SKIP() << "Llama 3.1 / Qwen3 tokenizer_config.json not fetched";
}

}  // namespace
}  // namespace tpinfer
