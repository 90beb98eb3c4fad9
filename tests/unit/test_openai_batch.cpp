// OpenAI batch files: request lines read into Requests (every body field, and
// an error naming each field that is refused), result lines written from
// Results (chat and completions, logprobs, echo, n choices, errors), ids that
// depend on the custom_id alone, the format detected from the first line, and
// the resume journal keyed on custom_id.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "job/chat_prompt.hpp"
#include "job/journal.hpp"
#include "job/jsonl.hpp"
#include "job/openai_request.hpp"
#include "job/openai_result.hpp"
#include "tiny_chat.hpp"

namespace tpinfer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kTemplate = test::kTinyLlama3Template;

using test::tiny_llama3_tokenizer;

RequestRules rules() {
  RequestRules r;
  r.vocab_size = 600;
  r.max_context = 256;
  r.tokenizer = tiny_llama3_tokenizer();
  r.defaults.max_new_tokens = 32;
  r.job_seed = 11;
  r.format = InputFormat::kOpenAi;
  r.model_name = "tiny";
  r.chat = std::make_shared<const ChatPrompt>(kTemplate, "<|begin_of_text|>", "<|end_of_text|>",
                                              tiny_llama3_tokenizer());
  return r;
}

json chat_line(const std::string& id, json body) {
  return {{"custom_id", id}, {"method", "POST"}, {"url", "/v1/chat/completions"}, {"body", body}};
}
json completion_line(const std::string& id, json body) {
  return {{"custom_id", id}, {"method", "POST"}, {"url", "/v1/completions"}, {"body", body}};
}
const json kMessages = json::array({{{"role", "user"}, {"content", "Hello there"}}});

ParsedLine parse(const json& line, const RequestRules& r = rules()) {
  return parse_openai_line(line.dump(), 4, r);
}

Request ok(const json& line, const RequestRules& r = rules()) {
  ParsedLine p = parse(line, r);
  EXPECT_TRUE(p.envelope);
  EXPECT_FALSE(p.error) << line.dump() << " -> " << (p.error ? p.error->error : "");
  return p.request ? *p.request : Request{};
}

std::string err(const json& line, const RequestRules& r = rules()) {
  ParsedLine p = parse(line, r);
  EXPECT_TRUE(p.envelope);
  EXPECT_FALSE(p.request) << line.dump();
  if (!p.error) return "";
  EXPECT_EQ(p.error->error.rfind("line 4: ", 0), 0u) << p.error->error;
  return p.error->error.substr(8);
}

TEST(OpenAiRequest, ChatBodyFieldsBecomeTheRequest) {
  const json line = chat_line("c-1", {{"model", "my-model"},
                                      {"messages", kMessages},
                                      {"max_completion_tokens", 7},
                                      {"temperature", 0.5},
                                      {"top_p", 0.9},
                                      {"n", 3},
                                      {"stop", "\n\n"},
                                      {"seed", 99},
                                      {"logprobs", true},
                                      {"top_logprobs", 4},
                                      {"presence_penalty", 0},
                                      {"frequency_penalty", 0.0},
                                      {"repetition_penalty", 1},
                                      {"user", "u"},
                                      {"metadata", {{"k", "v"}}},
                                      {"store", false},
                                      {"tools", json::array()}});
  ParsedLine p = parse(line);
  ASSERT_TRUE(p.request) << p.error->error;
  const Request& r = *p.request;
  EXPECT_EQ(r.id_json, "\"c-1\"");
  EXPECT_EQ(r.line, 4);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.sampling.max_new_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(r.sampling.seed, 99u);
  EXPECT_TRUE(r.sampling.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 4);
  EXPECT_FALSE(r.sampling.prompt_logprobs);
  // The rendered conversation, tokenized with its special tokens and one BOS.
  const std::vector<int32_t> want =
      tiny_llama3_tokenizer()->encode("<|begin_of_text|>[user]\nHello there<|eot_id|>[assistant]\n", false);
  EXPECT_EQ(r.prompt, want);
  EXPECT_EQ(r.prompt.front(), 556);
  EXPECT_EQ(std::count(r.prompt.begin(), r.prompt.end(), 556), 1);
  EXPECT_EQ(std::count(r.prompt.begin(), r.prompt.end(), 557), 1);
  const OpenAiEnvelope& e = *p.envelope;
  EXPECT_EQ(e.endpoint, OpenAiEndpoint::kChat);
  EXPECT_EQ(*e.custom_id, "c-1");
  EXPECT_EQ(e.model, "my-model");
  EXPECT_TRUE(e.logprobs);
  EXPECT_EQ(e.top_logprobs, 4);

  // Defaults: the job's max tokens, a seed derived from the custom_id, the model file's name.
  ParsedLine d = parse(chat_line("c-2", {{"messages", kMessages}, {"max_tokens", 5}}));
  ASSERT_TRUE(d.request);
  EXPECT_EQ(d.request->sampling.max_new_tokens, 5);
  EXPECT_EQ(d.envelope->model, "tiny");
  EXPECT_FALSE(d.envelope->logprobs);
  const Request d2 = ok(chat_line("c-2", {{"messages", kMessages}}));
  EXPECT_EQ(d2.sampling.max_new_tokens, 32);
  EXPECT_EQ(d2.sampling.seed, d.request->sampling.seed);
  EXPECT_NE(ok(chat_line("c-3", {{"messages", kMessages}})).sampling.seed, d2.sampling.seed);
  // Text parts are joined with newlines.
  const Request parts = ok(chat_line(
      "c-4",
      {{"messages",
        {{{"role", "user"},
          {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}}}}}));
  EXPECT_EQ(parts.prompt,
            tiny_llama3_tokenizer()->encode("<|begin_of_text|>[user]\na\nb<|eot_id|>[assistant]\n", false));
}

TEST(OpenAiRequest, CompletionsBodyFieldsBecomeTheRequest) {
  ParsedLine p = parse(completion_line(
      "p1", {{"prompt", "Once upon"}, {"max_tokens", 3}, {"echo", true}, {"logprobs", 2}}));
  ASSERT_TRUE(p.request) << p.error->error;
  EXPECT_EQ(p.request->prompt, tiny_llama3_tokenizer()->encode("Once upon", true));
  EXPECT_EQ(p.request->sampling.max_new_tokens, 3);
  EXPECT_TRUE(p.request->sampling.logprobs);
  EXPECT_EQ(p.request->sampling.top_logprobs, 2);
  EXPECT_TRUE(p.request->sampling.prompt_logprobs);  // echo + logprobs
  EXPECT_EQ(p.envelope->endpoint, OpenAiEndpoint::kCompletions);
  EXPECT_TRUE(p.envelope->echo);
  EXPECT_EQ(p.envelope->echo_text, "Once upon");
  EXPECT_EQ(p.envelope->prompt, p.request->prompt);

  // Token ids, a list of one prompt; no echo: no prompt logprobs.
  ParsedLine ids = parse(completion_line("p2", {{"prompt", {{5, 6, 7}}}, {"logprobs", 0}}));
  ASSERT_TRUE(ids.request) << ids.error->error;
  EXPECT_EQ(ids.request->prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_TRUE(ids.request->sampling.logprobs);
  EXPECT_EQ(ids.request->sampling.top_logprobs, 0);
  EXPECT_FALSE(ids.request->sampling.prompt_logprobs);
  EXPECT_FALSE(ids.envelope->echo);
  EXPECT_EQ(ok(completion_line("p3", {{"prompt", {"text"}}, {"best_of", 2}, {"n", 2}})).n, 2);
}

TEST(OpenAiRequest, EveryRefusedFieldIsNamed) {
  const auto chat = [](json extra) {
    json body = {{"messages", kMessages}};
    body.update(extra);
    return chat_line("x", body);
  };
  EXPECT_EQ(
      err(chat({{"tools", {{{"type", "function"}}}}})).rfind("\"body.tools\" is not supported", 0),
      0u);
  for (const char* field :
       {"response_format", "logit_bias", "functions", "tool_choice", "mystery"}) {
    const std::string e = err(chat({{field, {{"a", 1}}}}));
    EXPECT_EQ(e.rfind("\"body." + std::string(field) + "\" is not supported", 0), 0u) << e;
  }
  EXPECT_EQ(err(chat({{"presence_penalty", 0.5}}))
                .rfind("\"body.presence_penalty\" = 0.5 is not supported", 0),
            0u);
  EXPECT_EQ(err(chat({{"frequency_penalty", -1}})).rfind("\"body.frequency_penalty\" = -1", 0), 0u);
  EXPECT_EQ(err(chat({{"repetition_penalty", 1.1}})).rfind("\"body.repetition_penalty\" = 1.1", 0),
            0u);
  EXPECT_EQ(err(chat({{"top_logprobs", 3}})),
            "\"body.top_logprobs\" needs \"body.logprobs\": true (as OpenAI's API requires)");
  EXPECT_EQ(err(chat({{"logprobs", true}, {"top_logprobs", 21}})),
            "\"body.top_logprobs\" must be an integer in [0, 20], got 21");
  EXPECT_EQ(err(chat({{"n", 0}})), "\"body.n\" must be an integer in [1, 128], got 0");
  EXPECT_EQ(err(chat({{"max_tokens", 3}, {"max_completion_tokens", 3}})),
            "give \"body.max_completion_tokens\" or \"body.max_tokens\", not both");
  EXPECT_EQ(err(chat({{"temperature", "hot"}})),
            "\"body.temperature\" must be a number, not a string");
  EXPECT_EQ(err(chat({{"stream", true}})).rfind("\"body.stream\" is true", 0), 0u);
  // Messages: a non-text part, a tool call, a wrong type.
  EXPECT_EQ(err(chat_line("x", {{"messages",
                                 {{{"role", "user"},
                                   {"content", {{{"type", "image_url"}, {"image_url", "u"}}}}}}}})),
            "body.messages[0].content[0].type \"image_url\" is not supported: only text parts (it "
            "would change the prompt)");
  EXPECT_EQ(
      err(chat_line(
              "x",
              {{"messages",
                {{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array()}}}}}))
          .rfind("body.messages[0].tool_calls is not supported", 0),
      0u);
  EXPECT_EQ(err(chat_line("x", {{"messages", "hi"}})),
            "\"body.messages\" must be an array of messages, not a string");
  EXPECT_EQ(err(chat_line("x", {{"messages", json::array()}})), "\"body.messages\" is empty");
  EXPECT_EQ(err(chat_line("x", json::object())),
            "\"body.messages\" is missing: a chat request needs the conversation");
  // The envelope.
  json bad_url = chat_line("x", {{"messages", kMessages}});
  bad_url["url"] = "/v1/embeddings";
  EXPECT_EQ(err(bad_url),
            "\"url\" must be \"/v1/chat/completions\" or \"/v1/completions\", not "
            "\"/v1/embeddings\"");
  json get = chat_line("x", {{"messages", kMessages}});
  get["method"] = "GET";
  EXPECT_EQ(err(get), "\"method\" must be \"POST\", not \"GET\"");
  json extra = chat_line("x", {{"messages", kMessages}});
  extra["priority"] = 1;
  EXPECT_EQ(err(extra),
            "unknown field \"priority\" (a batch request has custom_id, method, url and body)");
  json no_id = chat_line("x", {{"messages", kMessages}});
  no_id.erase("custom_id");
  EXPECT_EQ(err(no_id), "missing \"custom_id\"");
  no_id["custom_id"] = 7;
  ParsedLine int_id = parse(no_id);
  ASSERT_TRUE(int_id.error);
  EXPECT_EQ(int_id.error->id_json, "");
  EXPECT_FALSE(int_id.envelope->custom_id);
  // Completions.
  EXPECT_EQ(err(completion_line("x", {{"prompt", {"a", "b"}}})),
            "\"body.prompt\" holds 2 prompts: give one prompt a line (a string or an array of "
            "token ids)");
  EXPECT_EQ(err(completion_line("x", {{"prompt", "a"}, {"suffix", "z"}})),
            "\"body.suffix\" is not supported (it would change the result)");
  EXPECT_EQ(err(completion_line("x", {{"prompt", "a"}, {"best_of", 3}})),
            "\"body.best_of\" other than n is not supported (it would change the result)");
  EXPECT_EQ(err(completion_line("x", {{"prompt", {1, 700}}})),
            "body.prompt[1] = 700 is outside the vocabulary [0, 600)");
  EXPECT_EQ(err(completion_line("x", {{"prompt", "a"}, {"messages", kMessages}}))
                .rfind("\"body.messages\" is not supported", 0),
            0u);
  // An error line keeps its custom_id.
  ParsedLine e = parse(completion_line("keep-me", {{"prompt", "a"}, {"logit_bias", {{"5", 10}}}}));
  ASSERT_TRUE(e.error);
  EXPECT_EQ(e.error->id_json, "\"keep-me\"");
  EXPECT_EQ(*e.envelope->custom_id, "keep-me");
}

TEST(OpenAiRequest, ChatWithoutATemplateIsThatLinesError) {
  RequestRules r = rules();
  r.chat = nullptr;
  r.no_chat_reason = "the model m.h5 has none";
  EXPECT_EQ(err(chat_line("x", {{"messages", kMessages}}), r), "the model m.h5 has none");
  // A template that raises: that line's error, with the template's message.
  r.chat = std::make_shared<const ChatPrompt>(
      "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}x",
      std::nullopt, std::nullopt, tiny_llama3_tokenizer());
  EXPECT_EQ(err(chat_line("x", {{"messages", {{{"role", "system"}, {"content", "s"}}}}}), r),
            "the chat template rejects \"body.messages\": first must be user");
}

Result result_of(const std::string& id, std::vector<int32_t> tokens) {
  Result r;
  r.id_json = json(id).dump();
  r.line = 2;
  r.prompt_tokens = 4;
  Completion c;
  c.tokens = std::move(tokens);
  c.finish_reason = "length";
  r.choices.push_back(c);
  return r;
}

TEST(OpenAiResult, ChatLineHasOpenAisShape) {
  const std::vector<int32_t> toks = tiny_llama3_tokenizer()->encode(" Hi there", false);
  Result r = result_of("c-1", toks);
  r.choices[0].logprobs.assign(toks.size(), -0.25f);
  r.choices[0].top_logprobs.assign(toks.size(), {{toks[0], -0.25f}, {557, -2.5f}});
  r.choices.push_back(r.choices[0]);
  r.choices[1].finish_reason = "stop";
  OpenAiEnvelope env;
  env.custom_id = "c-1";
  env.model = "m";
  env.logprobs = true;
  env.top_logprobs = 2;
  const json j = json::parse(openai_result_to_json(r, &env, tiny_llama3_tokenizer().get(), 1700000000));
  EXPECT_EQ(j["custom_id"], "c-1");
  EXPECT_TRUE(j["error"].is_null());
  const std::string id = j["id"];
  ASSERT_EQ(id.rfind("batch_req_", 0), 0u);
  EXPECT_EQ(id.size(), 10u + 32u);
  EXPECT_EQ(j["response"]["status_code"], 200);
  EXPECT_EQ(j["response"]["request_id"], "req_" + id.substr(10));
  const json& b = j["response"]["body"];
  EXPECT_EQ(b["id"], "chatcmpl-" + id.substr(10));
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_EQ(b["created"], 1700000000);
  EXPECT_EQ(b["model"], "m");
  ASSERT_EQ(b["choices"].size(), 2u);
  EXPECT_EQ(b["choices"][1]["index"], 1);
  EXPECT_EQ(b["choices"][1]["finish_reason"], "stop");
  const json& m = b["choices"][0]["message"];
  EXPECT_EQ(m, json({{"role", "assistant"}, {"content", " Hi there"}}));
  const json& lp = b["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), toks.size());
  std::string joined;
  for (const json& t : lp) {
    EXPECT_EQ(t["logprob"], -0.25);
    std::string from_bytes;
    for (const json& c : t["bytes"]) from_bytes += static_cast<char>(c.get<int>());
    EXPECT_EQ(from_bytes, t["token"].get<std::string>());
    joined += t["token"].get<std::string>();
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_EQ(t["top_logprobs"][1]["token"], "<|eot_id|>");
    EXPECT_EQ(t["top_logprobs"][1]["logprob"], -2.5);
  }
  EXPECT_EQ(joined, " Hi there");
  EXPECT_EQ(b["usage"], json({{"prompt_tokens", 4},
                              {"completion_tokens", 2 * toks.size()},
                              {"total_tokens", 4 + 2 * toks.size()}}));
  // Without logprobs: null. The same custom_id gives the same ids; another, others.
  env.logprobs = false;
  const json again = json::parse(openai_result_to_json(r, &env, tiny_llama3_tokenizer().get(), 1700000000));
  EXPECT_TRUE(again["response"]["body"]["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(again["id"], j["id"]);
  env.custom_id = "c-2";
  EXPECT_NE(json::parse(openai_result_to_json(r, &env, tiny_llama3_tokenizer().get(), 1))["id"], j["id"]);
}

TEST(OpenAiResult, CompletionWithEchoPutsThePromptFirst) {
  const std::vector<int32_t> prompt = tiny_llama3_tokenizer()->encode("The cat", true);
  const std::vector<int32_t> gen = tiny_llama3_tokenizer()->encode(" sat", false);
  Result r = result_of("p", gen);
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  r.prompt_logprobs.assign(prompt.size() - 1, -1.5f);
  r.choices[0].logprobs.assign(gen.size(), -0.5f);
  r.choices[0].top_logprobs.assign(gen.size(), {{gen[0], -0.5f}});
  OpenAiEnvelope env;
  env.endpoint = OpenAiEndpoint::kCompletions;
  env.custom_id = "p";
  env.model = "m";
  env.echo = true;
  env.echo_text = "The cat";
  env.prompt = prompt;
  env.logprobs = true;
  env.top_logprobs = 1;
  const json j = json::parse(openai_result_to_json(r, &env, tiny_llama3_tokenizer().get(), 5));
  const json& b = j["response"]["body"];
  EXPECT_EQ(b["object"], "text_completion");
  EXPECT_EQ(b["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  const json& c = b["choices"][0];
  EXPECT_EQ(c["text"], "The cat sat");
  const json& lp = c["logprobs"];
  const size_t n = prompt.size() + gen.size();
  ASSERT_EQ(lp["tokens"].size(), n);
  ASSERT_EQ(lp["token_logprobs"].size(), n);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(lp["token_logprobs"][1], -1.5);
  EXPECT_EQ(lp["token_logprobs"][n - 1], -0.5);
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["top_logprobs"][n - 1].size(), 1u);
  // Offsets: where each token's text starts; the generated text after "The cat".
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(lp["text_offset"][prompt.size()], 7);
  for (size_t i = 1; i < n; ++i) EXPECT_LE(lp["text_offset"][i - 1], lp["text_offset"][i]);
  // No echo: the completion's text alone, offsets from 0.
  env.echo = false;
  const json plain = json::parse(openai_result_to_json(r, &env, tiny_llama3_tokenizer().get(), 5));
  EXPECT_EQ(plain["response"]["body"]["choices"][0]["text"], " sat");
  EXPECT_EQ(plain["response"]["body"]["choices"][0]["logprobs"]["tokens"].size(), gen.size());
  EXPECT_EQ(plain["response"]["body"]["choices"][0]["logprobs"]["text_offset"][0], 0);
}

TEST(OpenAiResult, ErrorLines) {
  Result e;
  e.id_json = "\"c\"";
  e.line = 9;
  e.error = "line 9: bad";
  OpenAiEnvelope env;
  env.custom_id = "c";
  const json j = json::parse(openai_result_to_json(e, &env, nullptr, 5));
  EXPECT_TRUE(j["response"].is_null());
  EXPECT_EQ(j["custom_id"], "c");
  EXPECT_EQ(j["error"],
            json({{"code", "invalid_request"}, {"message", "line 9: bad"}, {"line", 9}}));
  e.duplicate_id = true;
  const json d = json::parse(openai_result_to_json(e, &env, nullptr, 5));
  EXPECT_EQ(d["error"]["code"], "duplicate_custom_id");
  EXPECT_NE(d["id"], j["id"]);  // the duplicate is its own line
  const json none = json::parse(openai_result_to_json(e, nullptr, nullptr, 5));
  EXPECT_TRUE(none["custom_id"].is_null());
}

std::string tmp(const std::string& name) {
  fs::create_directories(TPINFER_TEST_TMP);
  const std::string p = std::string(TPINFER_TEST_TMP) + "/openai_" + name;
  fs::remove(p);
  return p;
}

TEST(OpenAiBatch, FormatIsDetectedFromTheFirstLine) {
  const std::string p = tmp("detect.jsonl");
  std::ofstream(p) << "\n  \n" << chat_line("a", {{"messages", kMessages}}).dump() << "\n";
  EXPECT_EQ(detect_input_format(p), InputFormat::kOpenAi);
  std::ofstream(p) << R"({"url": "/v1/completions", "body": {}})"
                   << "\n";
  EXPECT_EQ(detect_input_format(p), InputFormat::kOpenAi);
  std::ofstream(p) << R"({"id": 1, "prompt_tokens": [1]})"
                   << "\n";
  EXPECT_EQ(detect_input_format(p), InputFormat::kTpinfer);
  std::ofstream(p) << "not json\n";
  EXPECT_EQ(detect_input_format(p), InputFormat::kTpinfer);
  std::ofstream(p) << "";
  EXPECT_EQ(detect_input_format(p), InputFormat::kTpinfer);
  EXPECT_THROW(detect_input_format(tmp("missing.jsonl")), InputError);
}

TEST(OpenAiBatch, ReaderTurnsARepeatedCustomIdIntoADuplicateError) {
  const std::string p = tmp("dup.jsonl");
  std::ofstream(p) << chat_line("a", {{"messages", kMessages}}).dump() << "\n"
                   << completion_line("a", {{"prompt", "x"}}).dump() << "\n";
  RequestReader reader(p, rules());
  auto first = reader.next();
  ASSERT_TRUE(first && first->request);
  auto second = reader.next();
  ASSERT_TRUE(second && second->error);
  EXPECT_TRUE(second->error->duplicate_id);
  EXPECT_EQ(second->error->error, "line 2: duplicate custom_id \"a\" (first on line 1)");
  ASSERT_TRUE(second->envelope);
  EXPECT_EQ(second->envelope->endpoint, OpenAiEndpoint::kCompletions);
  EXPECT_FALSE(reader.next());
}

TEST(OpenAiBatch, JournalKeysOutputLinesOnCustomId) {
  OpenAiEnvelope env;
  env.custom_id = "a";
  env.model = "m";
  Result ok_result = result_of("a", {5});
  Result dup;
  dup.id_json = "\"a\"";
  dup.line = 3;
  dup.duplicate_id = true;
  dup.error = "line 3: duplicate";
  Result anonymous;
  anonymous.line = 4;
  anonymous.error = "line 4: not JSON";
  OpenAiEnvelope env_b = env;
  env_b.custom_id = "b";
  Result bad_b;
  bad_b.id_json = "\"b\"";
  bad_b.line = 5;
  bad_b.error = "line 5: bad";
  const std::string p = tmp("journal.jsonl");
  {
    std::ofstream f(p);
    f << openai_result_to_json(ok_result, &env, tiny_llama3_tokenizer().get(), 1) << "\n"
      << openai_result_to_json(dup, &env, nullptr, 1) << "\n"
      << openai_result_to_json(anonymous, nullptr, nullptr, 1) << "\n"
      << openai_result_to_json(bad_b, &env_b, nullptr, 1) << "\n";
  }
  const Finished f = read_finished(p);
  EXPECT_EQ(f.lines, 4);
  EXPECT_EQ(f.ids, (std::set<std::string>{"\"a\"", "\"b\""}));
  EXPECT_EQ(f.error_lines, (std::set<int64_t>{3, 4}));
  // A second result for "a" is refused, as for native ids.
  std::ofstream(p, std::ios::app) << openai_result_to_json(ok_result, &env, tiny_llama3_tokenizer().get(), 1)
                                  << "\n";
  EXPECT_THROW(read_finished(p), InputError);
}

TEST(OpenAiBatch, ManifestsComparedWithoutCreatedAndWithTheFormat) {
  const json before = {{"input", "x"}, {"created", 1}, {"input_format", "openai"}};
  EXPECT_NO_THROW(check_manifest_matches(
      before, {{"input", "x"}, {"created", 2}, {"input_format", "openai"}}, "o"));
  EXPECT_THROW(check_manifest_matches(before, {{"input", "x"}, {"input_format", "tpinfer"}}, "o"),
               UsageError);
  // Manifests written before formats were recorded were of native files.
  EXPECT_NO_THROW(
      check_manifest_matches({{"input", "x"}}, {{"input", "x"}, {"input_format", "tpinfer"}}, "o"));
  EXPECT_THROW(
      check_manifest_matches({{"input", "x"}}, {{"input", "x"}, {"input_format", "openai"}}, "o"),
      UsageError);
}

}  // namespace
}  // namespace tpinfer
