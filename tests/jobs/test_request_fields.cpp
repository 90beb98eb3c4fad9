// Request fields in whole jobs: a misspelt field makes its line an error result
// (the job goes on; --strict refuses the job before any work), and "metadata"
// comes back on the result lines: across data-parallel groups (the wire between
// ranks) and after a crash and --resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

const std::string kConfig = config_json(
    {"LlamaForCausalLM", 64, 128, 2, 4, 2, 500, 256,
     R"({"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2})"});
// Bounds every run, so that a job that hangs fails its test instead of ctest's timeout.
constexpr const char* kTimeout = "timeout -k 5 120 ";

class RequestFields : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("fields", kConfig, 4);
    ASSERT_FALSE(model_.empty());
  }

  static std::string fresh_output(const std::string& name) {
    const std::string out = tmp_path("fields-" + name + ".jsonl");
    fs::remove(out);
    fs::remove(out + ".manifest.json");
    return out;
  }

  static std::string job(int np, const std::string& in, const std::string& out,
                         const std::string& extra = "") {
    return std::string(kTimeout) + TPINFER_MPIRUN + " -np " + std::to_string(np) + " " +
           TPINFER_BIN + " run --model " + model_ + " --input " + in + " --output " + out + " " +
           extra;
  }

  // A file of `n` requests, line i+1 with id "m<i>" and a metadata value of a
  // type that depends on i (every JSON type appears).
  static std::string input_with_metadata(const std::string& name, int n) {
    const std::string in = tmp_path("fields-" + name + "-in.jsonl");
    std::ofstream f(in);
    for (int i = 0; i < n; ++i) {
      nlohmann::json j = {{"id", "m" + std::to_string(i)},
                          {"max_new_tokens", 1 + (i * 7) % 12},
                          {"metadata", metadata_of(i)}};
      std::vector<int> prompt;
      for (int t = 0; t < 3 + (i * 13) % 40; ++t) prompt.push_back(3 + (i * 31 + t * 7) % 490);
      j["prompt_tokens"] = prompt;
      if (i % 4 == 1) j.update({{"temperature", 0.8}, {"seed", i}});
      f << j.dump() << "\n";
    }
    return in;
  }

  static nlohmann::json metadata_of(int i) {
    switch (i % 7) {
      case 0:
        return {{"row", i}, {"batch", "b" + std::to_string(i / 7)}, {"tags", {"x", i}}};
      case 1:
        return "note \"" + std::to_string(i) + "\" \xc3\xa9\n";
      case 2:
        return {i, nullptr, true, 2.5, {{"deep", {{"k", i}}}}};
      case 3:
        return i * 1000003LL;
      case 4:
        return nullptr;
      case 5:
        return i % 2 == 0;
      default:
        return -0.125 * i;
    }
  }

  // Every id m<i> once, each result line with its request's metadata; `others`
  // more lines.
  static void expect_metadata_on_every_line(const std::string& out, int n, int others = 0) {
    const auto res = results_by_id(out);  // throws on an id written twice
    ASSERT_EQ(res.size(), static_cast<size_t>(n + others));
    for (int i = 0; i < n; ++i) {
      const std::string id = "\"m" + std::to_string(i) + "\"";
      ASSERT_TRUE(res.count(id)) << id;
      const auto& r = res.at(id);
      EXPECT_FALSE(r.contains("error")) << r.dump();
      ASSERT_TRUE(r.contains("metadata")) << r.dump();
      EXPECT_EQ(r["metadata"], metadata_of(i)) << r.dump();
    }
  }

  static std::string model_;
};
std::string RequestFields::model_;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string typo_input() {
  const std::string in = tmp_path("fields-typo-in.jsonl");
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5, 6, 7], "max_new_tokens": 3})"
                       "\n"
                    << R"({"id": "b", "prompt_tokens": [5, 6, 7], "temprature": 0.7,)"
                       R"( "metadata": {"user": "b"}})"
                       "\n"
                    << R"({"id": "c", "prompt_tokens": [8, 9], "max_new_tokens": 2})"
                       "\n"
                    << R"({"id": "d", "prompt_tokens": [8, 9], "comment": "far from any field"})"
                       "\n";
  return in;
}

// The issue's case: "temprature" ran greedy, even under --strict.
TEST_F(RequestFields, AMisspeltFieldIsThatLinesErrorAndTheOthersRun) {
  const std::string in = typo_input(), out = fresh_output("typo");
  auto r = run_shell(job(2, in, out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 requests (2 errors)"), std::string::npos) << r.output;
  const auto res = results_by_id(out);
  ASSERT_EQ(res.size(), 4u);
  EXPECT_EQ(res.at("\"a\"")["completion_tokens"], 3);
  EXPECT_EQ(res.at("\"c\"")["completion_tokens"], 2);
  EXPECT_EQ(
      res.at("\"b\""),
      nlohmann::json::parse(
          R"({"id": "b", "line": 2, "metadata": {"user": "b"},)"
          R"( "error": "line 2: unknown field \"temprature\": did you mean \"temperature\"?"})"));
  const std::string far = res.at("\"d\"")["error"].get<std::string>();
  EXPECT_EQ(far.rfind("line 4: unknown field \"comment\"; a request's fields are id, prompt, ", 0),
            0u)
      << far;
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST_F(RequestFields, UnderStrictAMisspeltFieldRefusesTheJobBeforeAnyWork) {
  const std::string in = typo_input(), out = fresh_output("typo-strict");
  auto r = run_shell(job(2, in, out, "--strict"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  // One error line, naming the line and the field.
  EXPECT_EQ(count(r.output, "unknown field"), 1u) << r.output;
  EXPECT_NE(r.output.find("has 2 bad line(s) and --strict is set; first: line 2: unknown field "
                          "\"temprature\": did you mean \"temperature\"?"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(!fs::exists(out) || fs::file_size(out) == 0);
}

// DP=2: half the requests go to group 1 and their results come back to rank 0
// over MPI (request_to_wire / result_to_wire), so metadata must survive both.
TEST_F(RequestFields, MetadataComesBackOnEveryResultLineAcrossDataParallelGroups) {
  constexpr int kN = 40;
  const std::string in = input_with_metadata("dp", kN);
  // A line that fails after its id and metadata were read keeps them too.
  std::ofstream(in, std::ios::app)
      << R"({"id": "bad", "prompt_tokens": [1, 100000], "metadata": {"why": "vocab"}})"
         "\n";
  const std::string out = fresh_output("dp");
  auto r = run_shell(job(2, in, out, "--max-batch 4"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("41 requests (1 errors)"), std::string::npos) << r.output;
  auto res = results_by_id(out);
  ASSERT_TRUE(res.count("\"bad\""));
  EXPECT_EQ(res.at("\"bad\"")["metadata"], nlohmann::json({{"why", "vocab"}}));
  EXPECT_NE(res.at("\"bad\"")["error"].get<std::string>().find("outside the vocabulary"),
            std::string::npos);
  // Written as nlohmann writes the value: the line holds exactly that text.
  std::ifstream lines(out);
  std::string line;
  int with_metadata = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("metadata")) continue;
    ++with_metadata;
    const std::string text = ",\"metadata\":" + j["metadata"].dump() + "}";
    EXPECT_EQ(line.substr(line.size() - text.size()), text) << line;
  }
  EXPECT_EQ(with_metadata, kN + 1);
  expect_metadata_on_every_line(out, kN, 1);
}

// A resumed job makes its lines from the input again, metadata included.
TEST_F(RequestFields, MetadataComesBackOnTheLinesOfAResumedJob) {
  constexpr int kN = 60;
  const std::string in = input_with_metadata("resume", kN), out = fresh_output("resume");
  auto crashed = run_shell("TPINFER_FAULT=rank=1,step=6,kind=crash " +
                           job(2, in, out, "--max-batch 4 --checkpoint-interval 0.05"));
  EXPECT_EQ(crashed.exit_code, 137) << crashed.output;
  const auto partial = read_jsonl(out);
  EXPECT_LT(partial.size(), static_cast<size_t>(kN)) << "the job finished before the crash";
  for (const auto& j : partial) EXPECT_TRUE(j.contains("metadata")) << j.dump();
  auto resumed = run_shell(job(2, in, out, "--max-batch 4 --checkpoint-interval 0.05 --resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_metadata_on_every_line(out, kN);
}

}  // namespace
}  // namespace tpinfer::test
