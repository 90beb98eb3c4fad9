// OpenAI batch files through whole jobs: a model converted with a chat template
// in its tokenizer_config.json (`tpinfer info` shows it), a chat file and a
// completions file run on one rank and on two data-parallel groups, their
// results checked against native requests for the same prompts, a job killed
// mid-run and resumed (every custom_id answered once, the lines as an
// uninterrupted run writes them), and the start-up and per-line errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "job_helpers.hpp"
#include "unit/safetensors_writer.hpp"
#include "weights/model_config.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kTimeout = "timeout -k 5 180 ";
// Llama 3-like, with the tiny tokenizer's special tokens.
constexpr const char* kTemplate =
    "{{- bos_token }}{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] "
    "%}{{ raise_exception('unknown role ' ~ m.role) }}{% endif %}[{{ m.role }}]\n"
    "{{ m.content | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]\n"
    "{% endif %}";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class OpenAiJobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::create_directories(TPINFER_TEST_TMP);
    const ModelConfig c = config_from_hf_json(json::parse(R"({
      "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": 600, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
      "bos_token_id": 556, "eos_token_id": 557, "torch_dtype": "float32"})"));
    const std::string dir = tmp_path("openai-hf");
    model_ = tmp_path("openai-model.h5");
    write_hf_dir(dir, c, random_model_tensors(c, 9, "F32"));
    write_bytes(dir + "/tokenizer.json", slurp(fs::path(TPINFER_SOURCE_DIR) /
                                               "tests/data/tokenizer/tiny_llama3.tokenizer.json"));
    write_json(dir + "/tokenizer_config.json", {{"chat_template", kTemplate},
                                                {"bos_token", "<|begin_of_text|>"},
                                                {"eos_token", "<|eot_id|>"}});
    fs::remove(model_);
    const CommandResult r = tpinfer_cli("convert --quiet --hf " + dir + " --output " + model_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_NE(
        r.output.find("chat template: stored (" + std::to_string(std::string(kTemplate).size()) +
                      " bytes, from " + dir + "/tokenizer_config.json)"),
        std::string::npos)
        << r.output;
  }

  static std::string fresh(const std::string& name) {
    const std::string p = tmp_path("openai-" + name);
    fs::remove(p);
    fs::remove(p + ".manifest.json");
    return p;
  }

  static std::string write_lines(const std::string& name, const std::vector<json>& lines) {
    const std::string p = tmp_path("openai-" + name);
    std::ofstream f(p);
    for (const json& j : lines) f << j.dump() << "\n";
    return p;
  }

  static CommandResult job(int np, const std::string& in, const std::string& out,
                           const std::string& extra = "") {
    return run_shell(std::string(kTimeout) + TPINFER_MPIRUN + " -np " + std::to_string(np) + " " +
                     TPINFER_BIN + " run --model " + model_ + " --input " + in + " --output " +
                     out + " " + extra);
  }

  // Output lines by custom_id (or "line:N" for a line without one), each once.
  static std::map<std::string, json> by_custom_id(const std::string& path) {
    std::map<std::string, json> out;
    for (const json& j : read_jsonl(path)) {
      std::string key = j["custom_id"].is_string() ? j["custom_id"].get<std::string>() : "";
      if (!j["error"].is_null() && (key.empty() || j["error"]["code"] == "duplicate_custom_id"))
        key = "line:" + j["error"]["line"].dump();
      EXPECT_TRUE(out.emplace(key, j).second) << key << " written twice";
    }
    return out;
  }

  static json conversation(int i) {
    json m = json::array();
    if (i % 3 == 0) m.push_back({{"role", "system"}, {"content", "You answer briefly."}});
    m.push_back({{"role", "user"}, {"content", "Question " + std::to_string(i) + ": why?"}});
    if (i % 4 == 1) {
      m.push_back({{"role", "assistant"}, {"content", "Because."}});
      m.push_back({{"role", "user"},
                   {"content",
                    {{{"type", "text"}, {"text", "And then"}},
                     {{"type", "text"}, {"text", "caf\xC3\xA9?"}}}}});
    }
    return m;
  }

  static std::vector<json> chat_requests(int n) {
    std::vector<json> out;
    for (int i = 0; i < n; ++i) {
      json body = {{"model", "tiny-chat"},
                   {"messages", conversation(i)},
                   {"max_completion_tokens", 4 + i % 9}};
      if (i % 5 == 2) body.update({{"temperature", 0.9}, {"seed", 100 + i}});
      if (i % 2 == 0) body["logprobs"] = true;
      if (i % 7 == 3) body["stop"] = json::array({"zz", "\n\n"});
      out.push_back({{"custom_id", "chat-" + std::to_string(i)},
                     {"method", "POST"},
                     {"url", "/v1/chat/completions"},
                     {"body", body}});
    }
    return out;
  }

  static std::string model_;
};
std::string OpenAiJobs::model_;

// The same output without "created" (each fresh job has its own start time).
json without_created(json j) {
  if (j["response"].is_object()) j["response"]["body"].erase("created");
  return j;
}

// Equal but for floating-point numbers (the log-probabilities), which other
// layouts round differently in the last bits (reduction order).
void expect_near_json(const json& a, const json& b, const std::string& where) {
  if (a.is_number_float() || b.is_number_float()) {
    ASSERT_TRUE(a.is_number() && b.is_number()) << where << ": " << a << " vs " << b;
    EXPECT_NEAR(a.get<double>(), b.get<double>(), 1e-4) << where;
    return;
  }
  ASSERT_EQ(a.type(), b.type()) << where << ": " << a << " vs " << b;
  if (a.is_object()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (const auto& [k, v] : a.items()) {
      ASSERT_TRUE(b.contains(k)) << where << "." << k;
      expect_near_json(v, b[k], where + "." + k);
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (size_t i = 0; i < a.size(); ++i)
      expect_near_json(a[i], b[i], where + "[" + std::to_string(i) + "]");
  } else {
    EXPECT_EQ(a, b) << where;
  }
}

TEST_F(OpenAiJobs, InfoShowsTheStoredChatTemplate) {
  const CommandResult r = tpinfer_cli("info --model " + model_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chat template: yes (" + std::to_string(std::string(kTemplate).size()) +
                          " bytes; bos_token \"<|begin_of_text|>\", eos_token \"<|eot_id|>\")"),
            std::string::npos)
      << r.output;
}

TEST_F(OpenAiJobs, ChatFileOnOneRankAndTwoGroupsMatchesNativeMessages) {
  std::vector<json> lines = chat_requests(16);
  lines.push_back({{"custom_id", "bad-tools"},
                   {"method", "POST"},
                   {"url", "/v1/chat/completions"},
                   {"body", {{"messages", conversation(1)}, {"tools", {{{"type", "function"}}}}}}});
  lines.push_back({{"custom_id", "bad-role"},
                   {"method", "POST"},
                   {"url", "/v1/chat/completions"},
                   {"body", {{"messages", {{{"role", "tool"}, {"content", "x"}}}}}}});
  lines.push_back(lines[0]);  // a repeated custom_id
  const std::string in = write_lines("chat.jsonl", lines);
  const std::string one = fresh("chat-np1.jsonl"), two = fresh("chat-np2.jsonl");
  CommandResult r = job(1, in, one);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("19 requests (3 errors)"), std::string::npos) << r.output;
  r = job(2, in, two);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto a = by_custom_id(one), b = by_custom_id(two);
  ASSERT_EQ(a.size(), 19u);
  ASSERT_EQ(b.size(), 19u);
  for (const auto& [id, j] : a) {
    ASSERT_TRUE(b.count(id)) << id;
    expect_near_json(without_created(j), without_created(b.at(id)), id);
  }
  EXPECT_EQ(json::parse(slurp(one + ".manifest.json"))["input_format"], "openai");

  // The errors name what is wrong, and the job went on.
  EXPECT_EQ(a.at("bad-tools")["error"]["code"], "invalid_request");
  EXPECT_NE(a.at("bad-tools")["error"]["message"].get<std::string>().find(
                "\"body.tools\" is not supported"),
            std::string::npos);
  EXPECT_NE(a.at("bad-role")["error"]["message"].get<std::string>().find("unknown role tool"),
            std::string::npos);
  EXPECT_EQ(a.at("line:19")["error"]["code"], "duplicate_custom_id");
  EXPECT_EQ(a.at("line:19")["custom_id"], "chat-0");

  // The same conversations as native requests: the same text, token counts and logprobs.
  std::vector<json> native;
  for (int i = 0; i < 16; ++i) {
    const json& body = lines[i]["body"];
    json n = {{"id", "chat-" + std::to_string(i)},
              {"messages", body["messages"]},
              {"max_new_tokens", body["max_completion_tokens"]}};
    for (const char* k : {"temperature", "seed", "logprobs", "stop"})
      if (body.contains(k)) n[k] = body[k];
    native.push_back(n);
  }
  const std::string nin = write_lines("chat-native.jsonl", native),
                    nout = fresh("chat-native-out.jsonl");
  r = job(1, nin, nout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto n = results_by_id(nout);
  for (int i = 0; i < 16; ++i) {
    const std::string id = "chat-" + std::to_string(i);
    const json& nat = n.at(json(id).dump());
    const json& oa = a.at(id);
    ASSERT_TRUE(oa["error"].is_null()) << oa;
    const json& body = oa["response"]["body"];
    EXPECT_EQ(body["object"], "chat.completion");
    EXPECT_EQ(body["model"], "tiny-chat");
    const json& choice = body["choices"][0];
    EXPECT_EQ(choice["message"]["content"], nat["text"]) << id;
    EXPECT_EQ(choice["finish_reason"], nat["finish_reason"]) << id;
    EXPECT_EQ(body["usage"]["prompt_tokens"], nat["prompt_tokens"]) << id;
    EXPECT_EQ(body["usage"]["completion_tokens"], nat["completion_tokens"]) << id;
    if (i % 2 == 0) {
      ASSERT_EQ(choice["logprobs"]["content"].size(), nat["logprobs"].size()) << id;
      for (size_t k = 0; k < nat["logprobs"].size(); ++k)
        EXPECT_FLOAT_EQ(choice["logprobs"]["content"][k]["logprob"].get<float>(),
                        nat["logprobs"][k].get<float>());
    } else {
      EXPECT_TRUE(choice["logprobs"].is_null()) << id;
    }
  }
}

TEST_F(OpenAiJobs, CompletionsFileWithEchoAndTokenPrompts) {
  const std::vector<std::string> prompts = {"Hello world", "The quick brown fox",
                                            "caf\xC3\xA9 au lait"};
  std::vector<json> lines;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // (echo with logprobs asks for the prompt's logprobs too: the engine's part, not tested here)
    json body = {{"prompt", prompts[i]}, {"max_tokens", 6}, {"echo", i == 1}};
    if (i != 1) body["logprobs"] = 0;
    lines.push_back({{"custom_id", "p" + std::to_string(i)},
                     {"method", "POST"},
                     {"url", "/v1/completions"},
                     {"body", body}});
  }
  lines.push_back({{"custom_id", "ids"},
                   {"method", "POST"},
                   {"url", "/v1/completions"},
                   {"body", {{"prompt", {10, 20, 30}}, {"max_tokens", 5}, {"echo", true}}}});
  lines.push_back({{"custom_id", "suffix"},
                   {"method", "POST"},
                   {"url", "/v1/completions"},
                   {"body", {{"prompt", "x"}, {"suffix", "y"}}}});
  const std::string in = write_lines("completions.jsonl", lines),
                    out = fresh("completions-out.jsonl");
  CommandResult r = job(2, in, out, "--input-format openai");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto res = by_custom_id(out);
  ASSERT_EQ(res.size(), 5u);
  std::vector<json> native;
  for (size_t i = 0; i < prompts.size(); ++i)
    native.push_back(
        {{"id", "p" + std::to_string(i)}, {"prompt", prompts[i]}, {"max_new_tokens", 6}});
  native.push_back({{"id", "ids"}, {"prompt_tokens", {10, 20, 30}}, {"max_new_tokens", 5}});
  const std::string nin = write_lines("completions-native.jsonl", native),
                    nout = fresh("completions-native-out.jsonl");
  r = job(1, nin, nout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto n = results_by_id(nout);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    const json& body = res.at(id)["response"]["body"];
    EXPECT_EQ(body["object"], "text_completion");
    const json& c = body["choices"][0];
    const std::string text = n.at(json(id).dump())["text"];
    EXPECT_EQ(c["text"], i == 1 ? prompts[i] + text : text) << id;
    if (i == 1) {
      EXPECT_TRUE(c["logprobs"].is_null());
      continue;
    }
    // logprobs 0: the chosen tokens' log-probabilities, no k best.
    EXPECT_EQ(c["logprobs"]["token_logprobs"].size(),
              body["usage"]["completion_tokens"].get<size_t>());
    EXPECT_TRUE(c["logprobs"]["top_logprobs"].is_null());
  }
  // Token ids echo as their decoded text.
  const json& ids = res.at("ids")["response"]["body"]["choices"][0];
  const std::string text = n.at("\"ids\"")["text"];
  ASSERT_GE(ids["text"].get<std::string>().size(), text.size());
  EXPECT_EQ(
      ids["text"].get<std::string>().substr(ids["text"].get<std::string>().size() - text.size()),
      text);
  EXPECT_EQ(res.at("suffix")["error"]["message"],
            "line 5: \"body.suffix\" is not supported (it would change the result)");
}

// n, top_logprobs and prompt_logprobs reach every group's engine (the wire
// between ranks carries them): one rank and two groups answer alike, whatever
// the engine makes of them.
TEST_F(OpenAiJobs, NTopLogprobsAndPromptLogprobsAnswerAlikeOnEveryLayout) {
  std::vector<json> lines;
  for (int i = 0; i < 40; ++i) {
    json j = {
        {"id", "r" + std::to_string(i)}, {"messages", conversation(i)}, {"max_new_tokens", 5}};
    if (i % 4 == 1) j["n"] = 2;
    if (i % 4 == 2) j["top_logprobs"] = 3;
    if (i % 4 == 3) j["prompt_logprobs"] = true;
    lines.push_back(j);
  }
  const std::string in = write_lines("features.jsonl", lines);
  const std::string one = fresh("features-np1.jsonl"), two = fresh("features-np2.jsonl");
  ASSERT_EQ(job(1, in, one).exit_code, 0);
  ASSERT_EQ(job(2, in, two, "--max-batch 1").exit_code, 0);
  const auto a = results_by_id(one), b = results_by_id(two);
  ASSERT_EQ(a.size(), 40u);
  ASSERT_EQ(b.size(), 40u);
  for (const auto& [id, j] : a) expect_near_json(j, b.at(id), id);
}

TEST_F(OpenAiJobs, KilledAndResumedJobAnswersEveryCustomIdOnceAsAnUninterruptedOne) {
  const std::string in = write_lines("resume.jsonl", chat_requests(48));
  const std::string ref = fresh("resume-ref.jsonl"), out = fresh("resume-out.jsonl");
  CommandResult r = job(2, in, ref, "--max-batch 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_shell("TPINFER_FAULT=rank=1,step=6,kind=crash " + std::string(kTimeout) + TPINFER_MPIRUN +
                " -np 2 " + TPINFER_BIN + " run --model " + model_ + " --input " + in +
                " --output " + out + " --max-batch 4 --checkpoint-interval 0.05");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  const size_t partial = read_jsonl(out).size();
  EXPECT_LT(partial, 48u) << "the job finished before the crash";
  const int64_t created = json::parse(slurp(out + ".manifest.json"))["created"];
  // Another format is refused: the manifest recorded this one.
  r = job(2, in, out, "--max-batch 4 --resume --input-format tpinfer");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("input_format was \"openai\", now \"tpinfer\""), std::string::npos)
      << r.output;
  r = job(2, in, out, "--max-batch 4 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto got = by_custom_id(out), want = by_custom_id(ref);
  ASSERT_EQ(got.size(), 48u);
  for (const auto& [id, j] : want) {
    ASSERT_TRUE(got.count(id)) << id;
    // Every line of the output carries the first run's start, resumed lines too.
    EXPECT_EQ(got.at(id)["response"]["body"]["created"], created) << id;
    expect_near_json(without_created(got.at(id)), without_created(j), id);
  }
}

TEST_F(OpenAiJobs, StartUpAndStrictErrors) {
  const std::string in = write_lines("errors.jsonl", chat_requests(3));
  // A template the renderer cannot run: one line naming it, exit 2, nothing written.
  const std::string bad_template = tmp_path("openai-bad.jinja");
  std::ofstream(bad_template) << "{% for m in messages %}{{ m.content }}";
  std::string out = fresh("errors-out.jsonl");
  CommandResult r = job(1, in, out, "--chat-template " + bad_template);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--chat-template " + bad_template + ": "), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  // --chat-template overrides the stored one (and the manifest records it).
  const std::string other = tmp_path("openai-other.jinja");
  std::ofstream(other) << "{{ bos_token }}{{ messages[-1].content }}";
  r = job(1, in, out, "--chat-template " + other);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(json::parse(slurp(out + ".manifest.json")).contains("chat_template"));
  // Prompts are now only the last message: fewer tokens than the stored template gives.
  const std::string stored_out = fresh("errors-stored.jsonl");
  ASSERT_EQ(job(1, in, stored_out).exit_code, 0);
  const auto with_other = by_custom_id(out), with_stored = by_custom_id(stored_out);
  EXPECT_LT(with_other.at("chat-0")["response"]["body"]["usage"]["prompt_tokens"],
            with_stored.at("chat-0")["response"]["body"]["usage"]["prompt_tokens"]);
  // --strict refuses a file with a bad line before any work.
  std::vector<json> lines = chat_requests(2);
  lines.push_back({{"custom_id", "x"},
                   {"method", "POST"},
                   {"url", "/v1/chat/completions"},
                   {"body", {{"messages", conversation(0)}, {"frequency_penalty", 1.5}}}});
  const std::string strict_in = write_lines("strict.jsonl", lines);
  out = fresh("strict-out.jsonl");
  r = job(1, strict_in, out, "--strict");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("line 3: \"body.frequency_penalty\" = 1.5 is not supported"),
            std::string::npos)
      << r.output;
  // OpenAI results are text: a model without a tokenizer is refused at start-up.
  const std::string config = tmp_path("openai-notok-config.json"),
                    bare = tmp_path("openai-notok.h5");
  std::ofstream(config) << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
      "num_key_value_heads": 2, "vocab_size": 600, "max_position_embeddings": 64,
      "torch_dtype": "float32"})";
  ASSERT_EQ(
      tpinfer_cli("make-model --config " + config + " --output " + bare + " --seed 1").exit_code,
      0);
  out = fresh("notok-out.jsonl");
  r = run_shell(std::string(kTimeout) + TPINFER_MPIRUN + " -np 1 " + TPINFER_BIN + " run --model " +
                bare + " --input " + strict_in + " --output " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("is an OpenAI batch file, whose results are text, and the model has no "
                          "tokenizer"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out));
  // Read as native lines, every OpenAI line is an error naming its fields.
  out = fresh("forced-native.jsonl");
  r = job(1, strict_in, out, "--input-format tpinfer");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const json& j : read_jsonl(out))
    EXPECT_NE(j["error"].get<std::string>().find("unknown field"), std::string::npos) << j;
}

// The README's chat example, as it is written there: the demo model with the
// demo chat template over inputs/chat-batch.jsonl on two ranks; the line the
// README shows is the job's (but for "created", the job's start).
TEST(OpenAiReadme, ChatBatchExampleWritesTheLineTheReadmeShows) {
  const fs::path src(TPINFER_SOURCE_DIR);
  const std::string readme = slurp(src / "README.md");
  const std::string command =
      "mpirun -np 2 build/tpinfer run --model inputs/demo-model.h5 \\\n"
      "    --chat-template inputs/demo-chat-template.jinja \\\n"
      "    --input inputs/chat-batch.jsonl --output out/chat.jsonl";
  ASSERT_NE(readme.find(command), std::string::npos) << "the README's command changed";
  const size_t at = readme.find("{\"id\":\"batch_req_");
  ASSERT_NE(at, std::string::npos);
  const json shown = json::parse(readme.substr(at, readme.find('\n', at) - at));
  const std::string out = tmp_path("openai-readme.jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  const CommandResult r = run_shell(
      std::string(kTimeout) + "sh -c 'cd " + src.string() + " && " + TPINFER_MPIRUN + " -np 2 " +
      TPINFER_BIN + " run --model inputs/demo-model.h5 --chat-template " +
      "inputs/demo-chat-template.jinja --input inputs/chat-batch.jsonl --output " + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, json> lines;
  for (const json& j : read_jsonl(out)) lines[j["custom_id"].get<std::string>()] = j;
  ASSERT_EQ(lines.size(), 5u);
  const std::string id = shown["custom_id"];
  ASSERT_TRUE(lines.count(id));
  json got = lines.at(id);
  got["response"]["body"]["created"] = shown["response"]["body"]["created"];
  EXPECT_EQ(got, shown);
  EXPECT_EQ(lines.at("chat-4")["error"]["line"], 5);
  EXPECT_EQ(lines.at("chat-4")["error"]["message"].get<std::string>().rfind(
                "line 5: \"body.tools\" is not supported by tpinfer; ", 0),
            0u);
  for (const char* ok : {"chat-1", "chat-2", "chat-3", "text-1"})
    EXPECT_EQ(lines.at(ok)["response"]["status_code"], 200) << ok;
}

}  // namespace
}  // namespace tpinfer::test
