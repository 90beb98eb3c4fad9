// Request lines in, result lines out, the wire form between ranks, and the
// append-only output file (the job's checkpoint).
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "job/jsonl.hpp"

namespace tpinfer {
namespace {

RequestRules test_rules() {
  RequestRules r;
  r.vocab_size = 1000;
  r.max_context = 64;
  r.defaults.max_new_tokens = 16;
  r.defaults.temperature = 0.5f;
  r.defaults.top_k = 3;
  r.defaults.top_p = 0.75f;
  r.defaults.stop_token_ids = {9};
  r.job_seed = 7;
  return r;
}

std::string tmp_path(const std::string& name) {
  const std::string p = std::string(TPINFER_TEST_TMP) + "/jsonl_" + name;
  std::filesystem::remove_all(p);
  return p;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  f << content;
  ASSERT_TRUE(f.good()) << path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Request parse_ok(const std::string& line, const RequestRules& rules = test_rules(),
                 int64_t line_no = 3) {
  ParsedLine p = parse_request_line(line, line_no, rules);
  EXPECT_FALSE(p.error) << line << " -> " << (p.error ? p.error->error : "");
  EXPECT_TRUE(p.request) << line;
  return p.request ? *p.request : Request{};
}

// The error result of a line that must be rejected; checks the common parts.
Result parse_err(const std::string& line, const RequestRules& rules = test_rules(),
                 int64_t line_no = 3) {
  ParsedLine p = parse_request_line(line, line_no, rules);
  EXPECT_FALSE(p.request) << line;
  EXPECT_TRUE(p.error) << line;
  if (!p.error) return Result{};
  EXPECT_EQ(p.error->line, line_no);
  EXPECT_EQ(p.error->error.rfind("line " + std::to_string(line_no) + ": ", 0), 0u)
      << p.error->error;
  EXPECT_FALSE(p.error->duplicate_id);
  return *p.error;
}

std::string tokens_json(int n, int first = 1) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    s += std::to_string((first + i) % 1000);
  }
  return s + "]";
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// ---------------------------------------------------------------- parsing

TEST(JsonlRequest, TokenPromptTakesTheDefaults) {
  const Request r = parse_ok(R"({"id":"a","prompt_tokens":[1,2,999]})");
  EXPECT_EQ(r.id_json, "\"a\"");
  EXPECT_EQ(r.line, 3);
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{1, 2, 999}));
  EXPECT_EQ(r.sampling.max_new_tokens, 16);
  EXPECT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_EQ(r.sampling.top_p, 0.75f);
  EXPECT_EQ(r.sampling.stop_token_ids, (std::vector<int32_t>{9}));
  EXPECT_FALSE(r.sampling.logprobs);
}

TEST(JsonlRequest, EveryFieldIsRead) {
  const Request r =
      parse_ok(R"({"metadata":{"x":[1]},"id":42,"prompt_tokens":[0,999],"max_new_tokens":5,)"
               R"("temperature":0.7,"top_k":40,"top_p":0.9,"seed":18446744073709551615,)"
               R"("stop":[2,5],"logprobs":true,"ignore_eos":true})");
  EXPECT_EQ(r.id_json, "42");
  EXPECT_EQ(r.metadata_json, R"({"x":[1]})");
  EXPECT_EQ(r.prompt, (std::vector<int32_t>{0, 999}));
  EXPECT_EQ(r.sampling.max_new_tokens, 5);
  EXPECT_EQ(r.sampling.temperature, 0.7f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(r.sampling.stop_token_ids, (std::vector<int32_t>{2, 5}));
  EXPECT_TRUE(r.sampling.logprobs);
  EXPECT_TRUE(r.sampling.ignore_eos);
  EXPECT_FALSE(parse_ok(R"({"id":1,"prompt_tokens":[4]})").sampling.ignore_eos);
}

TEST(JsonlRequest, NullFieldsTakeTheDefaults) {
  const Request r = parse_ok(
      R"({"id":"n","prompt":null,"prompt_tokens":[4],"max_new_tokens":null,"temperature":null,)"
      R"("top_k":null,"top_p":null,"stop":null,"logprobs":null})");
  EXPECT_EQ(r.sampling.max_new_tokens, 16);
  EXPECT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.sampling.stop_token_ids, (std::vector<int32_t>{9}));
}

TEST(JsonlRequest, IntegerValuedFieldsAcceptIntegersWhereNumbersAreAsked) {
  const Request r = parse_ok(R"({"id":1,"prompt_tokens":[4],"temperature":2,"top_p":1})");
  EXPECT_EQ(r.sampling.temperature, 2.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(parse_ok(R"({"id":-5,"prompt_tokens":[4],"stop":[]})").sampling.stop_token_ids,
            std::vector<int32_t>{});
  EXPECT_EQ(parse_ok(R"({"id":-5,"prompt_tokens":[4]})").id_json, "-5");
  EXPECT_EQ(parse_ok(R"({"id":18446744073709551615,"prompt_tokens":[4]})").id_json,
            "18446744073709551615");
}

TEST(JsonlRequest, MaxNewTokensIsClampedToTheContext) {
  // 60 prompt tokens in a 64-token context leave room for 4.
  const std::string prompt = tokens_json(60);
  EXPECT_EQ(parse_ok(R"({"id":1,"max_new_tokens":1000,"prompt_tokens":)" + prompt + "}")
                .sampling.max_new_tokens,
            4);
  EXPECT_EQ(parse_ok(R"({"id":1,"prompt_tokens":)" + prompt + "}").sampling.max_new_tokens, 4);
  EXPECT_EQ(parse_ok(R"({"id":1,"max_new_tokens":3,"prompt_tokens":)" + prompt + "}")
                .sampling.max_new_tokens,
            3);
  EXPECT_EQ(parse_ok(R"({"id":1,"prompt_tokens":)" + tokens_json(63) + "}").sampling.max_new_tokens,
            1);
}

TEST(JsonlRequest, NotJsonNamesTheLineAndTheReason) {
  Result e = parse_err("abc", test_rules(), 12);
  EXPECT_EQ(e.error,
            "line 12: not valid JSON (column 1: syntax error while parsing value - invalid "
            "literal; last read: 'a')");
  EXPECT_EQ(e.id_json, "");

  e = parse_err(R"({"id":1,"prompt_tokens":[1]} trailing)");
  EXPECT_NE(e.error.find("line 3: not valid JSON (column "), std::string::npos) << e.error;
  EXPECT_NE(e.error.find("expected end of input"), std::string::npos) << e.error;
  EXPECT_EQ(e.id_json, "");

  e = parse_err(R"({"id":1,"prompt_tokens":[1)");
  EXPECT_NE(e.error.find("not valid JSON (column 27: syntax error while parsing array"),
            std::string::npos)
      << e.error;

  // nlohmann reports a number too large for a double as out_of_range, not parse_error.
  e = parse_err(R"({"id":1,"prompt_tokens":[1],"x":1e999})");
  EXPECT_EQ(e.error, "line 3: not valid JSON (number overflow parsing '1e999')");

  // The message must stay valid UTF-8, or the error line itself could not be written.
  e = parse_err("{\"id\":\"\xff\xfe\",\"prompt_tokens\":[1]}");
  EXPECT_NE(e.error.find("not valid JSON (column 8: syntax error while parsing value - invalid "
                         "string: ill-formed UTF-8 byte"),
            std::string::npos)
      << e.error;
  EXPECT_NO_THROW({ const auto j = nlohmann::json::parse(result_to_json(e)); });
}

TEST(JsonlRequest, NotAnObject) {
  EXPECT_EQ(parse_err("[1,2]").error, "line 3: a request must be a JSON object, not an array");
  EXPECT_EQ(parse_err("\"text\"").error, "line 3: a request must be a JSON object, not a string");
  EXPECT_EQ(parse_err("17").error, "line 3: a request must be a JSON object, not an integer");
}

TEST(JsonlRequest, IdRules) {
  Result e = parse_err(R"({"prompt_tokens":[1]})");
  EXPECT_EQ(e.error, "line 3: missing \"id\"");
  EXPECT_EQ(e.id_json, "");
  e = parse_err(R"({"id":null,"prompt_tokens":[1]})");
  EXPECT_EQ(e.error, "line 3: \"id\" must be a string or an integer, not null");
  EXPECT_EQ(e.id_json, "");
  EXPECT_EQ(parse_err(R"({"id":1.5,"prompt_tokens":[1]})").error,
            "line 3: \"id\" must be a string or an integer, not a floating-point number");
  EXPECT_EQ(parse_err(R"({"id":["a"],"prompt_tokens":[1]})").error,
            "line 3: \"id\" must be a string or an integer, not an array");
  EXPECT_EQ(parse_err(R"({"id":true,"prompt_tokens":[1]})").error,
            "line 3: \"id\" must be a string or an integer, not a boolean");
  // The canonical form: escapes resolved, so equal ids compare equal as text.
  EXPECT_EQ(parse_ok(R"({"id":"\u0041\"b","prompt_tokens":[1]})").id_json, R"("A\"b")");
}

TEST(JsonlRequest, PromptRules) {
  Result e = parse_err(R"({"id":"p","prompt":"hello"})");
  EXPECT_EQ(e.error,
            "line 3: \"prompt\" is text, but this model has no tokenizer: give "
            "\"prompt_tokens\"");
  EXPECT_EQ(e.id_json, "\"p\"");  // the id was usable, so the error line carries it
  EXPECT_EQ(
      parse_err(R"({"id":"p"})").error,
      "line 3: missing the prompt: give \"prompt_tokens\" (token ids) or \"prompt\" (text) or "
      "\"messages\" (a conversation)");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt":"x","prompt_tokens":[1]})").error,
            "line 3: give either \"prompt_tokens\" or \"prompt\", not both");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt":5})").error,
            "line 3: \"prompt\" must be a string, not an integer");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":"1 2 3"})").error,
            "line 3: \"prompt_tokens\" must be an array of token ids, not a string");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[]})").error,
            "line 3: \"prompt_tokens\" is empty");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1,1.5]})").error,
            "line 3: prompt_tokens[1] must be an integer token id, not a floating-point number");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1,2,"3"]})").error,
            "line 3: prompt_tokens[2] must be an integer token id, not a string");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1,2,-1]})").error,
            "line 3: prompt_tokens[2] = -1 is outside the vocabulary [0, 1000)");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1000]})").error,
            "line 3: prompt_tokens[0] = 1000 is outside the vocabulary [0, 1000)");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1,18446744073709551615]})").error,
            "line 3: prompt_tokens[1] = 18446744073709551615 is outside the vocabulary [0, 1000)");
  EXPECT_EQ(parse_err(R"({"id":"p","prompt_tokens":[1e30]})").error,
            "line 3: prompt_tokens[0] must be an integer token id, not a floating-point number");
}

TEST(JsonlRequest, PromptMustLeaveRoomForOneToken) {
  RequestRules rules = test_rules();
  rules.max_context = 4096;
  rules.vocab_size = 32000;
  Result e = parse_err(R"({"id":"long","prompt_tokens":)" + tokens_json(5000) + "}", rules, 9);
  EXPECT_EQ(e.error.rfind("line 9: prompt has 5000 tokens; the model's context is 4096", 0), 0u)
      << e.error;
  EXPECT_EQ(e.id_json, "\"long\"");
  parse_err(R"({"id":"long","prompt_tokens":)" + tokens_json(4096) + "}", rules);
  EXPECT_EQ(
      parse_ok(R"({"id":"fits","prompt_tokens":)" + tokens_json(4095) + "}", rules).prompt.size(),
      4095u);
}

TEST(JsonlRequest, SettingTypesAndRanges) {
  struct Case {
    const char* fields;
    const char* message;  // after "line 3: "
  };
  const Case cases[] = {
      {R"("max_new_tokens":"5")", R"("max_new_tokens" must be an integer, not a string)"},
      {R"("max_new_tokens":2.5)",
       R"("max_new_tokens" must be an integer, not a floating-point number)"},
      {R"("max_new_tokens":0)", R"("max_new_tokens" must be an integer >= 1, got 0)"},
      {R"("max_new_tokens":-3)", R"("max_new_tokens" must be an integer >= 1, got -3)"},
      {R"("temperature":"hot")", R"("temperature" must be a number, not a string)"},
      {R"("temperature":-0.1)", R"("temperature" must be a number >= 0, got -0.1)"},
      {R"("temperature":1e300)", R"("temperature" must be a number >= 0, got 1e+300)"},
      {R"("top_k":true)", R"("top_k" must be an integer, not a boolean)"},
      {R"("top_k":-1)", R"("top_k" must be an integer >= 0, got -1)"},
      {R"("top_k":18446744073709551615)",
       R"("top_k" must be an integer >= 0, got 18446744073709551615)"},
      {R"("top_p":"x")", R"("top_p" must be a number, not a string)"},
      {R"("top_p":0)", R"("top_p" must be in (0, 1], got 0)"},
      {R"("top_p":1.5)", R"("top_p" must be in (0, 1], got 1.5)"},
      {R"("top_p":-0.5)", R"("top_p" must be in (0, 1], got -0.5)"},
      {R"("seed":"7")", R"("seed" must be a non-negative integer, not a string)"},
      {R"("seed":1.5)", R"("seed" must be a non-negative integer, not a floating-point number)"},
      {R"("seed":-1)", R"("seed" must be an integer in [0, 18446744073709551615], got -1)"},
      {R"("seed":18446744073709551616)",
       R"("seed" must be an integer in [0, 18446744073709551615], got 1.8446744073709552e+19)"},
      {R"("stop":"###")",
       R"(stop strings need a tokenizer, and this model has none: give token ids in "stop")"},
      {R"("stop":["###"])",
       R"(stop strings need a tokenizer, and this model has none: give token ids in "stop")"},
      {R"("stop":[1,"###"])",
       R"(stop strings need a tokenizer, and this model has none: give token ids in "stop")"},
      {R"("stop":5)",
       R"("stop" must be a string or an array of strings and token ids, not an integer)"},
      {R"("stop":[1,5000])", R"(stop[1] = 5000 is outside the vocabulary [0, 1000))"},
      {R"("stop":[[1]])", R"(stop[0] must be a string or an integer token id, not an array)"},
      {R"("logprobs":1)", R"("logprobs" must be true or false, not an integer)"},
      {R"("logprobs":"yes")", R"("logprobs" must be true or false, not a string)"},
  };
  for (const Case& c : cases) {
    const std::string line = std::string(R"({"id":"r","prompt_tokens":[1],)") + c.fields + "}";
    const Result e = parse_err(line);
    EXPECT_EQ(e.error, std::string("line 3: ") + c.message) << line;
    EXPECT_EQ(e.id_json, "\"r\"") << line;
  }
}

TEST(JsonlRequest, SeedWithoutSeedFieldDependsOnlyOnJobSeedAndId) {
  const RequestRules rules = test_rules();
  const uint64_t a = parse_ok(R"({"id":"x","prompt_tokens":[1]})", rules, 1).sampling.seed;
  // Other line, other layout, other key order, escaped id: same seed.
  EXPECT_EQ(parse_ok(R"( { "prompt_tokens" : [ 1 ], "id" : "\u0078" } )", rules, 500).sampling.seed,
            a);
  EXPECT_NE(parse_ok(R"({"id":"y","prompt_tokens":[1]})", rules).sampling.seed, a);
  RequestRules other = rules;
  other.job_seed = 8;
  EXPECT_NE(parse_ok(R"({"id":"x","prompt_tokens":[1]})", other).sampling.seed, a);
  // The string "1" and the integer 1 are different ids.
  EXPECT_NE(parse_ok(R"({"id":"1","prompt_tokens":[1]})", rules).sampling.seed,
            parse_ok(R"({"id":1,"prompt_tokens":[1]})", rules).sampling.seed);
  EXPECT_EQ(parse_ok(R"({"id":"x","prompt_tokens":[1],"seed":0})", rules).sampling.seed, 0u);
  EXPECT_EQ(parse_ok(R"({"id":"x","prompt_tokens":[1],"seed":123})", rules).sampling.seed, 123u);
}

// ---------------------------------------------------------------- reader

struct Seen {
  int64_t line;
  bool ok;
  std::string id_json;
  std::string error;
  bool duplicate;
};

std::vector<Seen> read_all(const std::string& path, const RequestRules& rules,
                           std::vector<Request>* requests = nullptr) {
  RequestReader reader(path, rules);
  std::vector<Seen> out;
  while (auto p = reader.next()) {
    if (p->request) {
      out.push_back({p->request->line, true, p->request->id_json, "", false});
      if (requests) requests->push_back(*p->request);
    } else {
      out.push_back(
          {p->error->line, false, p->error->id_json, p->error->error, p->error->duplicate_id});
    }
  }
  EXPECT_FALSE(reader.next());  // stays at the end
  return out;
}

TEST(JsonlRequestReader, MixedFile) {
  RequestRules rules = test_rules();
  rules.max_context = 1 << 20;
  // Line 7: ~1 MB of valid tokens; line 8: ~1 MB of broken JSON.
  std::string big_tokens = "[";
  const int kBig = 200000;
  for (int i = 0; i < kBig; ++i) {
    if (i) big_tokens += ',';
    big_tokens += std::to_string((i * 7) % 1000);
  }
  big_tokens += "]";
  ASSERT_GT(big_tokens.size(), 700000u);
  const std::string broken =
      R"({"id":"long","prompt_tokens":[1],"note":")" + std::string(1 << 20, 'z') + "}";
  const std::string content = R"({"id":"a","prompt_tokens":[1,2]})"
                              "\n"        // 1
                              "\n"        // 2 blank
                              "  \t  \n"  // 3 whitespace only
                              R"({"id":"b","prompt_tokens":[3]})"
                              "\r\n"       // 4 CRLF
                              "{oops\r\n"  // 5 bad JSON
                              R"({"id":"a","prompt_tokens":[5]})"
                              "\n"  // 6 duplicate of 1
                              R"({"id":"big","prompt_tokens":)" +
                              big_tokens + "}\n"  // 7
                              + broken +
                              "\n"  // 8
                              R"({"id":"c","prompt_tokens":[]})"
                              "\n"  // 9 bad, with id
                              R"({"id":"c","prompt_tokens":[1]})"
                              "\n"  // 10 duplicate of 9
                              R"({"id":"\u0061","prompt_tokens":[1]})"
                              "\n"  // 11 duplicate of 1 (escaped)
                              R"({"id":7,"prompt_tokens":[1]})"
                              "\n"  // 12
                              R"({"id":"7","prompt_tokens":[1]})"
                              "\r\n"                                   // 13 a different id from 7
                              "\r\n"                                   // 14 blank CRLF
                              R"({"id":"last","prompt_tokens":[3]})";  // 15, no newline at the end
  const std::string path = tmp_path("mixed.jsonl");
  write_file(path, content);

  std::vector<Request> requests;
  const std::vector<Seen> seen = read_all(path, rules, &requests);
  ASSERT_EQ(seen.size(), 12u);
  auto expect = [&](size_t i, int64_t line, bool ok, const std::string& id,
                    const std::string& error_prefix, bool dup) {
    SCOPED_TRACE("result " + std::to_string(i));
    EXPECT_EQ(seen[i].line, line);
    EXPECT_EQ(seen[i].ok, ok);
    EXPECT_EQ(seen[i].id_json, id);
    EXPECT_EQ(seen[i].error.substr(0, error_prefix.size()), error_prefix) << seen[i].error;
    EXPECT_EQ(seen[i].duplicate, dup);
  };
  expect(0, 1, true, "\"a\"", "", false);
  expect(1, 4, true, "\"b\"", "", false);
  expect(2, 5, false, "", "line 5: not valid JSON (column 2: ", false);
  expect(3, 6, false, "\"a\"", "line 6: duplicate id \"a\" (first on line 1)", true);
  expect(4, 7, true, "\"big\"", "", false);
  expect(5, 8, false, "", "line 8: not valid JSON (column ", false);
  expect(6, 9, false, "\"c\"", "line 9: \"prompt_tokens\" is empty", false);
  expect(7, 10, false, "\"c\"", "line 10: duplicate id \"c\" (first on line 9)", true);
  expect(8, 11, false, "\"a\"", "line 11: duplicate id \"a\" (first on line 1)", true);
  expect(9, 12, true, "7", "", false);
  expect(10, 13, true, "\"7\"", "", false);
  expect(11, 15, true, "\"last\"", "", false);
  EXPECT_EQ(seen[3].error, "line 6: duplicate id \"a\" (first on line 1)");
  // A 1 MB bad line gives a short message, not a 1 MB one.
  EXPECT_LT(seen[5].error.size(), 400u) << seen[5].error.substr(0, 400);
  EXPECT_NE(seen[5].error.find("missing closing quote"), std::string::npos) << seen[5].error;

  ASSERT_EQ(requests.size(), 6u);
  EXPECT_EQ(requests[0].prompt, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(requests[1].prompt, (std::vector<int32_t>{3}));
  ASSERT_EQ(requests[2].prompt.size(), static_cast<size_t>(kBig));
  for (int i = 0; i < kBig; ++i) {
    ASSERT_EQ(requests[2].prompt[i], (i * 7) % 1000) << i;
  }
  EXPECT_EQ(requests[5].prompt, (std::vector<int32_t>{3}));
}

TEST(JsonlRequestReader, EmptyAndBlankFiles) {
  const std::string empty = tmp_path("empty.jsonl");
  write_file(empty, "");
  EXPECT_TRUE(read_all(empty, test_rules()).empty());
  const std::string blank = tmp_path("blank.jsonl");
  write_file(blank, "\n\r\n   \n\t");
  EXPECT_TRUE(read_all(blank, test_rules()).empty());
  // Line numbers count the blank lines before the first request.
  const std::string late = tmp_path("late.jsonl");
  write_file(late, "\n\n\n{\"id\":1,\"prompt_tokens\":[1]}\n\n");
  const auto seen = read_all(late, test_rules());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].line, 4);
}

TEST(JsonlRequestReader, OpenAndReadFailures) {
  const std::string missing = tmp_path("does-not-exist.jsonl");
  try {
    RequestReader r(missing, test_rules());
    FAIL() << "opened a missing file";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open input file " + missing + ": No such file or directory");
    EXPECT_EQ(e.exit_code, kExitUsage);
  }
  // fopen accepts a directory; the first read is what fails.
  const std::string dir = tmp_path("a-directory");
  std::filesystem::create_directories(dir);
  RequestReader r(dir, test_rules());
  try {
    (void)r.next();
    FAIL() << "read a directory";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot read input file " + dir + ": Is a directory");
  }
}

// ---------------------------------------------------------------- output lines

// A result of one completion.
Result finished(const std::string& id_json, int64_t line, std::vector<int32_t> tokens,
                const std::string& finish_reason, int64_t prompt_tokens) {
  Result r;
  r.id_json = id_json;
  r.line = line;
  r.choices.resize(1);
  r.choices[0].tokens = std::move(tokens);
  r.choices[0].finish_reason = finish_reason;
  r.prompt_tokens = prompt_tokens;
  return r;
}

TEST(JsonlResult, FinishedResultLine) {
  Result r = finished("\"a\"", 5, {5, 6, 7}, "stop", 3);
  EXPECT_EQ(result_to_json(r),
            R"({"id":"a","tokens":[5,6,7],"finish_reason":"stop","prompt_tokens":3,)"
            R"("completion_tokens":3})");
  r.id_json = "42";
  r.choices.at(0).tokens = {};
  r.choices.at(0).finish_reason = "length";
  EXPECT_EQ(result_to_json(r), R"({"id":42,"tokens":[],"finish_reason":"length","prompt_tokens":3,)"
                               R"("completion_tokens":0})");
}

TEST(JsonlResult, NCompletionsGoInChoicesWithTheirOwnFields) {
  Result r = finished("\"n\"", 2, {4, 5}, "stop", 3);
  r.choices.push_back(r.choices[0]);
  r.choices[1].tokens = {6, 7, 8};
  r.choices[1].finish_reason = "length";
  r.choices[1].logprobs = {-1.0f, -2.0f, -0.5f};
  EXPECT_EQ(result_to_json(r),
            R"({"id":"n","prompt_tokens":3,"completion_tokens":5,"choices":[)"
            R"({"index":0,"tokens":[4,5],"finish_reason":"stop","completion_tokens":2},)"
            R"({"index":1,"tokens":[6,7,8],"finish_reason":"length","completion_tokens":3,)"
            R"("logprobs":[-1,-2,-0.5]}]})");
}

TEST(JsonlResult, TopLogprobsAndPromptLogprobsAreParallelArrays) {
  Result r = finished("1", 1, {9, 3}, "length", 3);
  r.choices[0].logprobs = {-0.5f, -0.25f};
  r.choices[0].top_logprobs = {{{9, -0.5f}, {2, -1.0f}}, {{3, -0.25f}, {9, -2.0f}}};
  r.prompt_logprobs = {-3.0f, -0.125f};
  EXPECT_EQ(result_to_json(r),
            R"({"id":1,"tokens":[9,3],"finish_reason":"length","prompt_tokens":3,)"
            R"("completion_tokens":2,"logprobs":[-0.5,-0.25],"top_logprobs":[)"
            R"([{"token":9,"logprob":-0.5},{"token":2,"logprob":-1}],)"
            R"([{"token":3,"logprob":-0.25},{"token":9,"logprob":-2}]],)"
            R"("prompt_logprobs":[null,-3,-0.125]})");
  // And across the wire, bit for bit, with each completion's stop-string cut.
  r.choices.push_back(r.choices[0]);
  r.choices[1].text_bytes = 5;
  const Result back = result_from_wire(result_to_wire(r));
  ASSERT_EQ(back.choices.size(), 2u);
  EXPECT_EQ(back.choices[1].text_bytes, 5);
  EXPECT_EQ(back.choices[0].text_bytes, -1);
  ASSERT_EQ(back.choices[1].top_logprobs.size(), 2u);
  EXPECT_EQ(back.choices[1].top_logprobs[1][1].token, 9);
  EXPECT_EQ(back.choices[1].top_logprobs[1][1].logprob, -2.0f);
  EXPECT_EQ(back.prompt_logprobs, r.prompt_logprobs);
}

TEST(JsonlResult, LogprobsOnlyWhenPresentAndShortest) {
  Result r;
  r.choices.resize(1);
  r.id_json = R"("\u00e9\"x")";  // verbatim, whatever escapes it uses
  r.choices.at(0).tokens = {1, 2, 3, 4, 5};
  r.choices.at(0).logprobs = {-0.25f, -1.5f, -0.1f, -1e-5f,
                              -std::numeric_limits<float>::infinity()};
  r.choices.at(0).finish_reason = "stop";
  r.prompt_tokens = 1;
  const std::string line = result_to_json(r);
  EXPECT_EQ(line,
            R"({"id":"\u00e9\"x","tokens":[1,2,3,4,5],"finish_reason":"stop","prompt_tokens":1,)"
            R"("completion_tokens":5,"logprobs":[-0.25,-1.5,-0.1,-1e-05,null]})");
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["id"], "\xc3\xa9\"x");
  EXPECT_EQ(static_cast<float>(j["logprobs"][3].get<double>()), -1e-5f);
}

TEST(JsonlResult, ErrorLines) {
  Result r;
  r.line = 7;
  r.error = "line 7: not valid JSON (\"quoted\" \\ and\ttab)";
  EXPECT_EQ(result_to_json(r),
            R"j({"line":7,"error":"line 7: not valid JSON (\"quoted\" \\ and\ttab)"})j");
  r.id_json = "\"a\"";
  EXPECT_EQ(result_to_json(r),
            R"j({"id":"a","line":7,"error":"line 7: not valid JSON (\"quoted\" \\ and\ttab)"})j");
  r.duplicate_id = true;
  r.error = "line 7: duplicate id \"a\" (first on line 1)";
  EXPECT_EQ(result_to_json(r), R"j({"duplicate_id":"a","line":7,)j"
                               R"j("error":"line 7: duplicate id \"a\" (first on line 1)"})j");
  // Error lines from the parser itself are valid JSON and carry its fields.
  const Result parsed =
      *parse_request_line(R"({"id":9,"prompt_tokens":[-4]})", 2, test_rules()).error;
  const auto j = nlohmann::json::parse(result_to_json(parsed));
  EXPECT_EQ(j["id"], 9);
  EXPECT_EQ(j["line"], 2);
  EXPECT_EQ(j["error"], "line 2: prompt_tokens[0] = -4 is outside the vocabulary [0, 1000)");
  EXPECT_EQ(j.size(), 3u);
}

// ---------------------------------------------------------------- wire

TEST(JsonlResultWire, RequestRoundTrip) {
  Request r;
  r.id_json = R"("\u00e9 \"q\"")";
  r.line = 123456789012;
  r.prompt = {0, 1, 2147483647, 31999};
  r.sampling.max_new_tokens = 77;
  r.sampling.temperature = 0.7f;
  r.sampling.top_k = 40;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = std::numeric_limits<uint64_t>::max();
  r.sampling.stop_token_ids = {2, 32000};
  r.sampling.logprobs = true;
  r.sampling.top_logprobs = 20;
  r.sampling.prompt_logprobs = true;
  r.n = 128;
  const Request b = request_from_wire(request_to_wire(r));
  EXPECT_EQ(b.id_json, r.id_json);
  EXPECT_EQ(b.line, r.line);
  EXPECT_EQ(b.prompt, r.prompt);
  EXPECT_EQ(b.sampling.max_new_tokens, 77);
  EXPECT_EQ(bits(b.sampling.temperature), bits(0.7f));
  EXPECT_EQ(b.sampling.top_k, 40);
  EXPECT_EQ(bits(b.sampling.top_p), bits(0.9f));
  EXPECT_EQ(b.sampling.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(b.sampling.stop_token_ids, r.sampling.stop_token_ids);
  EXPECT_TRUE(b.sampling.logprobs);
  EXPECT_EQ(b.sampling.top_logprobs, 20);
  EXPECT_TRUE(b.sampling.prompt_logprobs);
  EXPECT_EQ(b.n, 128);

  r.sampling.seed = 0x8000000000000001ull;
  r.sampling.logprobs = false;
  r.sampling.temperature = std::numeric_limits<float>::denorm_min();
  const Request c = request_from_wire(request_to_wire(r));
  EXPECT_EQ(c.sampling.seed, 0x8000000000000001ull);
  EXPECT_FALSE(c.sampling.logprobs);
  EXPECT_EQ(bits(c.sampling.temperature), bits(std::numeric_limits<float>::denorm_min()));
}

TEST(JsonlResultWire, ResultRoundTripIsBitExact) {
  Result r = finished("18446744073709551615", 4, {1, 2, 3}, "length", 9);
  r.choices.at(0).logprobs = {-0.0f,
                              0.1f,
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::max(),
                              std::numeric_limits<float>::lowest(),
                              std::numeric_limits<float>::denorm_min(),
                              std::numeric_limits<float>::min()};
  // Plus many arbitrary finite bit patterns.
  uint64_t state = 12345;
  while (r.choices.at(0).logprobs.size() < 20000) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t u = static_cast<uint32_t>(state >> 32);
    float f;
    std::memcpy(&f, &u, sizeof f);
    if (std::isfinite(f)) r.choices.at(0).logprobs.push_back(f);
  }
  r.choices.at(0).logprobs.push_back(std::numeric_limits<float>::quiet_NaN());
  const Result b = result_from_wire(result_to_wire(r));
  EXPECT_EQ(b.id_json, r.id_json);
  EXPECT_EQ(b.line, 4);
  EXPECT_EQ(b.choices.at(0).tokens, r.choices.at(0).tokens);
  EXPECT_EQ(b.choices.at(0).finish_reason, "length");
  EXPECT_EQ(b.prompt_tokens, 9);
  EXPECT_EQ(b.error, "");
  EXPECT_FALSE(b.duplicate_id);
  ASSERT_EQ(b.choices.at(0).logprobs.size(), r.choices.at(0).logprobs.size());
  for (size_t i = 0; i + 1 < r.choices.at(0).logprobs.size(); ++i) {
    ASSERT_EQ(bits(b.choices.at(0).logprobs[i]), bits(r.choices.at(0).logprobs[i]))
        << i << " " << r.choices.at(0).logprobs[i];
  }
  EXPECT_TRUE(std::isnan(b.choices.at(0).logprobs.back()));

  Result e;
  e.id_json = "\"d\"";
  e.line = 8;
  e.error = "line 8: duplicate id \"d\" (first on line 2)";
  e.duplicate_id = true;
  const Result f = result_from_wire(result_to_wire(e));
  EXPECT_EQ(f.id_json, e.id_json);
  EXPECT_EQ(f.line, 8);
  EXPECT_EQ(f.error, e.error);
  EXPECT_TRUE(f.duplicate_id);
  EXPECT_TRUE(f.choices.empty());
}

TEST(JsonlResultWire, MalformedWireThrows) {
  EXPECT_THROW(request_from_wire("{"), Error);
  EXPECT_THROW(request_from_wire("[]"), Error);
  EXPECT_THROW(request_from_wire(R"({"id":"\"a\"","line":1})"), Error);
  EXPECT_THROW(result_from_wire(R"({"id":1})"), Error);
  Result one;
  one.choices.resize(1);
  std::string wire = result_to_wire(one);
  wire.replace(wire.find("\"logprobs\":[]"), 13, "\"logprobs\":[\"x\"]");
  try {
    (void)result_from_wire(wire);
    FAIL() << "accepted " << wire;
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code, kExitOther);
    EXPECT_NE(std::string(e.what()).find("malformed result on the wire"), std::string::npos);
  }
}

// ---------------------------------------------------------------- fields and metadata

// The known fields, as the error message lists them.
constexpr const char* kFieldList =
    "a request's fields are id, prompt, prompt_tokens, messages, max_new_tokens, temperature, "
    "top_k, top_p, seed, stop, n, logprobs, top_logprobs, prompt_logprobs, ignore_eos, metadata "
    "(your own data can go under \"metadata\")";

TEST(JsonlFields, UnknownFieldIsAnErrorNamingItAndTheNearestKnownOne) {
  // The issue's case: this ran greedy (the default) without a word.
  const Result r = parse_err(R"({"id":"t","prompt_tokens":[1],"temprature":0.7})");
  EXPECT_EQ(r.error, R"(line 3: unknown field "temprature": did you mean "temperature"?)");
  EXPECT_EQ(r.id_json, "\"t\"");
  // Near misses of every kind: edits, a swap, case, '-' for '_', and both.
  const std::vector<std::pair<std::string, std::string>> near = {
      {"temperatur", "temperature"},
      {"temperaturee", "temperature"},
      {"tempreature", "temperature"},
      {"Temperature", "temperature"},
      {"TEMPERATURE", "temperature"},
      {"max-new-tokens", "max_new_tokens"},
      {"Max-New-Tokens", "max_new_tokens"},
      {"max_new_token", "max_new_tokens"},
      {"maxnewtokens", "max_new_tokens"},
      {"prompt_token", "prompt_tokens"},
      {"ingore_eos", "ignore_eos"},
      {"ignore-eos", "ignore_eos"},
      {"top-k", "top_k"},
      {"topk", "top_k"},
      {"Top_P", "top_p"},
      {"seeed", "seed"},
      {"sed", "seed"},
      {"stops", "stop"},
      {"logprob", "logprobs"},
      {"log_probs", "logprobs"},
      {"metdata", "metadata"},
      {"meta_data", "metadata"},
      {"ID", "id"},
      // Other engines' names.
      {"max_tokens", "max_new_tokens"},
      {"max_completion_tokens", "max_new_tokens"},
      {"stop_token_ids", "stop"},
      {"custom_id", "id"}};
  for (const auto& [typo, meant] : near) {
    const Result e = parse_err(R"({"id":5,"prompt_tokens":[1],")" + typo + R"(":1})");
    EXPECT_EQ(e.error, "line 3: unknown field \"" + typo + "\": did you mean \"" + meant + "\"?")
        << typo;
  }
  // Fields are checked first: a misspelt prompt is named, not reported missing.
  EXPECT_EQ(parse_err(R"({"id":1,"promt":"hi"})").error,
            R"(line 3: unknown field "promt": did you mean "prompt"?)");
  // Even when the id itself is misspelt (the line then has no id to carry).
  const Result no_id = parse_err(R"({"Id":1,"prompt_tokens":[1]})");
  EXPECT_EQ(no_id.error, R"(line 3: unknown field "Id": did you mean "id"?)");
  EXPECT_EQ(no_id.id_json, "");
}

TEST(JsonlFields, UnknownFieldFarFromEveryKnownOneListsTheKnownFields) {
  for (const std::string field : {"max_length", "extra", "xy", "temperature_", "note"}) {
    const Result e = parse_err(R"({"id":"q","prompt_tokens":[1],")" + field + R"(":0.7})");
    if (field == "temperature_") {  // one edit: not far
      EXPECT_EQ(e.error, R"(line 3: unknown field "temperature_": did you mean "temperature"?)");
      continue;
    }
    EXPECT_EQ(e.error, "line 3: unknown field \"" + field + "\"; " + kFieldList) << field;
    EXPECT_EQ(e.error.find("did you mean"), std::string::npos) << e.error;
  }
  // Any value, even null, is a use of the field.
  EXPECT_EQ(parse_err(R"({"id":"q","prompt_tokens":[1],"zzz":null})").error,
            std::string("line 3: unknown field \"zzz\"; ") + kFieldList);
}

TEST(JsonlFields, SeveralUnknownFieldsAreNamedUpToThree) {
  // Object keys come in sorted order (nlohmann's object is a std::map).
  EXPECT_EQ(parse_err(R"({"id":1,"prompt_tokens":[1],"topp":1,"temprature":1})").error,
            R"(line 3: unknown fields "temprature" (did you mean "temperature"?), )"
            R"("topp" (did you mean "top_p"?))");
  EXPECT_EQ(parse_err(R"({"id":1,"prompt_tokens":[1],"d":4,"temprature":1,"b":1,"aaaaaa":2,"c":3})")
                .error,
            std::string(R"(line 3: unknown fields "aaaaaa", "b", "c" and 2 more; )") + kFieldList);
}

TEST(JsonlFields, AnUnknownFieldsNameIsQuotedAndCut) {
  const std::string long_name(100000, 'k');
  const Result e = parse_err(R"({"id":1,"prompt_tokens":[1],")" + long_name + R"(":1})");
  EXPECT_EQ(e.error, "line 3: unknown field \"" + std::string(64, 'k') + "...\"; " + kFieldList);
  // Quotes, control characters and a multi-byte character cut in half stay valid JSON text.
  std::string odd = R"(a\"b\nc)";
  for (int i = 0; i < 40; ++i) odd += "\xc3\xa9";  // é: 80 bytes, so the cut falls inside one
  const Result q = parse_err(R"({"id":1,"prompt_tokens":[1],")" + odd + R"(":1})");
  const std::string want_prefix = R"(line 3: unknown field "a\"b\nc)";
  EXPECT_EQ(q.error.rfind(want_prefix, 0), 0u) << q.error;
  EXPECT_TRUE(nlohmann::json::accept(result_to_json(q))) << result_to_json(q);
  EXPECT_NE(q.error.find("...\"; a request's fields"), std::string::npos) << q.error;
}

TEST(JsonlFields, EveryKnownFieldIsAccepted) {
  const auto fields = request_fields();
  ASSERT_EQ(fields.size(), 16u);
  EXPECT_EQ(fields.front(), "id");
  EXPECT_EQ(fields.back(), "metadata");
  for (const std::string_view f : fields) {
    nlohmann::json j = {{"id", 1}, {"prompt_tokens", {1}}};
    if (f != "id" && f != "prompt_tokens") j[std::string(f)] = nullptr;
    parse_ok(j.dump());
  }
}

TEST(JsonlFields, MetadataOfEveryJsonTypeIsKeptAsNlohmannWritesIt) {
  // As given, when already written compactly (nlohmann's form).
  const std::vector<std::string> compact = {
      "null",
      "true",
      "false",
      "0",
      "-12",
      "18446744073709551615",
      "-9223372036854775808",
      "1.5",
      "-2.5e-07",
      R"("")",
      R"("row 17 \"quoted\" \\ \n\t é 日本 \u0001")",
      "[]",
      "{}",
      R"([1,"two",3.25,null,[false,{}]])",
      R"({"batch":"b-7","row":17,"tags":["x","y"],"nested":{"deep":[{"k":null}]}})"};
  for (const std::string& m : compact) {
    const std::string canonical = nlohmann::json::parse(m).dump();
    const Request r = parse_ok(R"({"id":"m","prompt_tokens":[1],"metadata":)" + m + "}");
    EXPECT_EQ(r.metadata_json, canonical) << m;
    if (m.find("nested") == std::string::npos) {
      EXPECT_EQ(canonical, m);
    }

    // Into the result line, last, and back out as the same value.
    Result res;
    res.choices.resize(1);
    res.id_json = r.id_json;
    res.line = r.line;
    res.choices.at(0).tokens = {4, 5};
    res.choices.at(0).finish_reason = "length";
    res.prompt_tokens = 1;
    res.metadata_json = r.metadata_json;
    const std::string line = result_to_json(res);
    EXPECT_EQ(line, R"({"id":"m","tokens":[4,5],"finish_reason":"length","prompt_tokens":1,)"
                    R"("completion_tokens":2,"metadata":)" +
                        canonical + "}");
    EXPECT_EQ(nlohmann::json::parse(line)["metadata"], nlohmann::json::parse(m)) << m;

    // Through the wire between ranks, byte for byte.
    EXPECT_EQ(request_from_wire(request_to_wire(r)).metadata_json, canonical) << m;
    EXPECT_EQ(result_from_wire(result_to_wire(res)).metadata_json, canonical) << m;
  }
  // Spacing is dropped and object keys come back sorted: the same JSON value.
  EXPECT_EQ(parse_ok(R"({"id":1,"prompt_tokens":[1],"metadata": { "z" : 1 , "a" : [ 2 ] } })")
                .metadata_json,
            R"({"a":[2],"z":1})");
  // Absent: none on the result line, nor on the wire.
  const Request none = parse_ok(R"({"id":1,"prompt_tokens":[1]})");
  EXPECT_EQ(none.metadata_json, "");
  EXPECT_EQ(request_to_wire(none).find("metadata"), std::string::npos);
  EXPECT_EQ(request_from_wire(request_to_wire(none)).metadata_json, "");
  Result plain;
  plain.id_json = "1";
  plain.choices.resize(1);
  EXPECT_EQ(result_to_json(plain).find("metadata"), std::string::npos);
  EXPECT_EQ(result_to_wire(plain).find("metadata"), std::string::npos);
  EXPECT_EQ(result_from_wire(result_to_wire(plain)).metadata_json, "");
}

TEST(JsonlFields, ErrorLinesCarryTheLinesMetadata) {
  // A rule broken after the id was read.
  const Result bad = parse_err(R"({"id":"e","prompt_tokens":[],"metadata":{"k":[1,2]}})");
  EXPECT_EQ(bad.metadata_json, R"({"k":[1,2]})");
  EXPECT_EQ(
      result_to_json(bad),
      R"({"id":"e","line":3,"error":"line 3: \"prompt_tokens\" is empty","metadata":{"k":[1,2]}})");
  // An unknown field.
  const Result typo = parse_err(R"({"id":"e","prompt_tokens":[1],"topk":5,"metadata":"mine"})");
  EXPECT_EQ(result_to_json(typo),
            R"({"id":"e","line":3,"error":"line 3: unknown field \"topk\": did you mean )"
            R"(\"top_k\"?","metadata":"mine"})");
  // No usable id: the metadata still tells the user which request it was.
  EXPECT_EQ(result_to_json(parse_err(R"({"prompt_tokens":[1],"metadata":5})")),
            R"({"line":3,"error":"line 3: missing \"id\"","metadata":5})");
  EXPECT_EQ(result_to_json(parse_err(R"({"id":[1],"prompt_tokens":[1],"metadata":null})")),
            R"({"line":3,"error":"line 3: \"id\" must be a string or an integer, not an array",)"
            R"("metadata":null})");
  // Not JSON: nothing can be read from it, metadata included.
  EXPECT_EQ(parse_err(R"({"id":1,"metadata":5)").metadata_json, "");
  // Error results cross the wire with it too.
  EXPECT_EQ(result_from_wire(result_to_wire(bad)).metadata_json, R"({"k":[1,2]})");

  // A repeated id's error line carries the repeating line's metadata.
  const std::string path = tmp_path("metadata-dup.jsonl");
  write_file(path, R"({"id":"a","prompt_tokens":[1],"metadata":{"n":1}})"
                   "\n"
                   R"({"id":"a","prompt_tokens":[2],"metadata":{"n":2}})"
                   "\n"
                   R"({"id":"b","prompt_tokens":[2],"tempreture":1,"metadata":[3]})"
                   "\n"
                   R"({"id":"b","prompt_tokens":[2]})"
                   "\n");
  RequestReader reader(path, test_rules());
  const auto first = reader.next(), dup = reader.next(), typo_line = reader.next(),
             dup_plain = reader.next();
  ASSERT_TRUE(first && first->request && dup && dup->error && typo_line && typo_line->error &&
              dup_plain && dup_plain->error);
  EXPECT_EQ(first->request->metadata_json, R"({"n":1})");
  EXPECT_TRUE(dup->error->duplicate_id);
  EXPECT_EQ(
      result_to_json(*dup->error),
      R"j({"duplicate_id":"a","line":2,"error":"line 2: duplicate id \"a\" (first on line 1)",)j"
      R"j("metadata":{"n":2}})j");
  EXPECT_EQ(typo_line->error->error,
            R"(line 3: unknown field "tempreture": did you mean "temperature"?)");
  EXPECT_EQ(typo_line->error->metadata_json, "[3]");
  EXPECT_EQ(dup_plain->error->metadata_json, "");
  EXPECT_EQ(dup_plain->error->error, "line 4: duplicate id \"b\" (first on line 3)");
}

// ---------------------------------------------------------------- output file

TEST(JsonlOutputWriter, AppendsWholeLines) {
  const std::string path = tmp_path("out.jsonl");
  write_file(path, "{\"old\":1}\n");
  {
    OutputWriter w(path);
    w.write_line("{\"n\":1}");
    w.write_line("{\"n\":2}");
    w.write_line(std::string(100000, 'x'));
    EXPECT_EQ(w.lines_written(), 3);
    w.sync();
    // Visible through another descriptor before the writer closes.
    EXPECT_EQ(read_file(path),
              "{\"old\":1}\n{\"n\":1}\n{\"n\":2}\n" + std::string(100000, 'x') + "\n");
  }
  {
    OutputWriter w(path);
    EXPECT_EQ(w.lines_written(), 0);
    w.write_line("{\"n\":3}");
    w.maybe_sync(0.0);
    w.maybe_sync(1e9);
    EXPECT_EQ(w.lines_written(), 1);
  }
  EXPECT_EQ(read_file(path),
            "{\"old\":1}\n{\"n\":1}\n{\"n\":2}\n" + std::string(100000, 'x') + "\n{\"n\":3}\n");
}

TEST(JsonlOutputWriter, RefusesALineWithANewline) {
  const std::string path = tmp_path("newline.jsonl");
  OutputWriter w(path);
  w.write_line("a");
  EXPECT_THROW(w.write_line("b\nc"), Error);
  EXPECT_EQ(w.lines_written(), 1);
  EXPECT_EQ(read_file(path), "a\n");
  // Created by the writer: 0644 less the umask.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u & ~mask);
}

TEST(JsonlOutputWriter, OpenFailureNamesThePath) {
  const std::string path = tmp_path("no-such-dir") + "/out.jsonl";
  try {
    OutputWriter w(path);
    FAIL() << "opened " << path;
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open output file " + path + ": No such file or directory");
  }
}

TEST(JsonlOutputWriter, DiskFullThrowsWithThePath) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full";
  OutputWriter w("/dev/full");
  try {
    w.write_line("{\"id\":1}");
    FAIL() << "wrote to /dev/full";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write output file /dev/full: No space left on device");
    EXPECT_EQ(e.exit_code, kExitOther);
  }
  EXPECT_EQ(w.lines_written(), 0);
}

// A file size limit makes the write that crosses it short, then EFBIG: the
// writer must cut the partial line off, keep every earlier one, and throw.
TEST(JsonlOutputWriter, WriteFailureLeavesOnlyWholeLines) {
  const std::string path = tmp_path("limited.jsonl");
  constexpr size_t kLineBytes = 64;  // with '\n'; 10000 is not a multiple
  constexpr rlim_t kLimit = 10000;
  auto make_line = [](const char* tag, int i) {
    char head[32];
    std::snprintf(head, sizeof head, "{\"%s\":%05d,\"pad\":\"", tag, i);
    std::string s = head;
    s += std::string(kLineBytes - 1 - s.size() - 2, 'p');
    s += "\"}";
    return s;
  };
  std::string before;
  for (int i = 0; i < 2; ++i) before += make_line("pre", i) + "\n";
  write_file(path, before);

  int pipe_fd[2];
  ASSERT_EQ(::pipe(pipe_fd), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipe_fd[0]);
    std::signal(SIGXFSZ, SIG_IGN);  // as main() must: EFBIG instead of death
    const rlimit lim{kLimit, kLimit};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(5);
    std::string report;
    int code = 4;  // never failed
    try {
      OutputWriter w(path);
      for (int i = 0; i < 1000; ++i) {
        try {
          w.write_line(make_line("new", i));
        } catch (const Error& e) {
          report = std::to_string(w.lines_written()) + "|" + std::to_string(e.exit_code) + "|" +
                   e.what();
          code = 0;
          break;
        }
      }
    } catch (...) {
      code = 6;
    }
    (void)!::write(pipe_fd[1], report.data(), report.size());
    ::close(pipe_fd[1]);
    ::_exit(code);
  }
  ::close(pipe_fd[1]);
  std::string report;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fd[0], buf, sizeof buf)) > 0;) report.append(buf, n);
  ::close(pipe_fd[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0) << "child exit code (4: never failed, 5: setrlimit)";

  const size_t whole = kLimit / kLineBytes;  // 156 lines fit, the 157th is cut
  const size_t new_lines = whole - 2;
  EXPECT_EQ(report,
            std::to_string(new_lines) + "|1|cannot write output file " + path + ": File too large");
  std::string expected = before;
  for (size_t i = 0; i < new_lines; ++i) expected += make_line("new", static_cast<int>(i)) + "\n";
  const std::string got = read_file(path);
  EXPECT_EQ(got.size(), whole * kLineBytes);
  EXPECT_EQ(got, expected);
}

}  // namespace
}  // namespace tpinfer
