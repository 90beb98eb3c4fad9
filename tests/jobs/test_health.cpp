// The health report of a whole job: rank 0 appends one metrics line per
// --health-interval with the job's counters and every rank's status; bad
// health settings fail before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

// Large enough that a decode step takes a measurable time on the cpu, so a
// job at --max-batch 1 spans several 0.2 s intervals.
const std::string kConfig =
    config_json({"LlamaForCausalLM", 256, 768, 4, 8, 2, 2048, 512,
                 R"({"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
         "bos_token_id": 1, "eos_token_id": 2})"});
constexpr int kRequests = 16;
constexpr int kNewTokens = 64;

class Health : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("health", kConfig, 5);
    ASSERT_FALSE(model_.empty());
    input_ = tmp_path("health-input.jsonl");
    std::ofstream in(input_);
    for (int i = 0; i < kRequests; ++i) {
      nlohmann::json j;
      j["id"] = "h" + std::to_string(i);
      std::vector<int> prompt;
      for (int t = 0; t < 4 + (i * 29) % 60; ++t) prompt.push_back(3 + (i * 97 + t * 31) % 2000);
      j["prompt_tokens"] = prompt;
      j["max_new_tokens"] = kNewTokens;
      j["ignore_eos"] = true;
      in << j.dump() << "\n";
    }
  }

  static std::string args(const std::string& out) {
    return "run --backend cpu --max-batch 1 --model " + model_ + " --input " + input_ +
           " --output " + out + " ";
  }

  static inline std::string model_, input_;
};

TEST_F(Health, MetricsLinesCountUpToTheEndWithEveryRank) {
  const std::string out = tmp_path("health-out.jsonl"), metrics = tmp_path("health-metrics.jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  fs::remove(metrics);
  auto r = mpirun_tpinfer(2, args(out) + "--metrics " + metrics + " --health-interval 0.2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(results_by_id(out).size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;

  const auto lines = read_jsonl(metrics);
  // One at the first step, at least one while the job runs, and the final one.
  ASSERT_GE(lines.size(), 3u) << r.output;
  int64_t last_done = -1;
  double last_time = 0;
  bool seen_midway = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& j = lines[i];
    SCOPED_TRACE("metrics line " + std::to_string(i + 1) + ": " + j.dump());
    EXPECT_EQ(j.at("requests_total"), kRequests);
    const int64_t done = j.at("requests_done");
    EXPECT_GE(done, last_done);
    last_done = done;
    EXPECT_GE(j.at("time").get<double>(), last_time);
    last_time = j.at("time");
    EXPECT_EQ(j.at("errors"), 0);
    EXPECT_GE(j.at("tokens_per_s").get<double>(), 0.0);
    EXPECT_EQ(j.at("final"), i + 1 == lines.size());
    if (done > 0 && done < kRequests) {
      seen_midway = true;
      EXPECT_GT(j.at("eta_s").get<double>(), 0.0);
    }
    const auto& ranks = j.at("ranks");
    ASSERT_EQ(ranks.size(), 2u);
    for (int rank = 0; rank < 2; ++rank) {
      const auto& s = ranks[static_cast<size_t>(rank)];
      EXPECT_EQ(s.at("rank"), rank);
      EXPECT_FALSE(s.contains("gpu"));               // cpu backend: no GPU fields
      if (s.at("report_age_s").is_null()) continue;  // not heard from yet
      EXPECT_GE(s.at("steps").get<int64_t>(), 0);
      EXPECT_GT(s.at("rss_bytes").get<int64_t>(), 0);
      EXPECT_EQ(s.at("stalled"), false);
    }
  }
  EXPECT_EQ(lines.front().at("requests_done"), 0);
  EXPECT_TRUE(seen_midway);
  const auto& last = lines.back();
  EXPECT_EQ(last.at("requests_done"), kRequests);
  EXPECT_EQ(last.at("generated_tokens"), kRequests * kNewTokens);
  EXPECT_EQ(last.at("eta_s").get<double>(), 0.0);
  // Both ranks stepped (data parallel: each took requests) and reported at the end.
  for (const auto& s : last.at("ranks")) {
    EXPECT_FALSE(s.at("report_age_s").is_null());
    EXPECT_GT(s.at("steps").get<int64_t>(), 0);
    EXPECT_EQ(s.at("has_work"), false);
  }
}

// Rank 1 stops at its 20th step with requests in hand (TPINFER_FAULT hang,
// outside any watchdog guard). The health report names it after 30 s without
// progress; the coordinator's liveness check ends the job at twice the
// collective timeout (36 s), exit 75.
TEST_F(Health, ARankWithoutProgressIsNamedInTheLog) {
  const std::string out = tmp_path("health-out-stall.jsonl");
  const std::string metrics = tmp_path("health-metrics-stall.jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  fs::remove(metrics);
  auto r = run_shell("TPINFER_FAULT=rank=1,step=20,kind=hang " + std::string(TPINFER_MPIRUN) +
                     " -x TPINFER_FAULT -np 2 " + TPINFER_BIN + " " + args(out) + "--metrics " +
                     metrics + " --health-interval 0.5 --collective-timeout 18");
  EXPECT_EQ(r.exit_code, 75) << r.output;
  const std::string warning = "tpinfer: warning: rank 1 has made no progress for 3";  // 30-some s
  const size_t at = r.output.find(warning);
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_NE(r.output.find("with requests in hand): stuck or very slow", at), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("warning: rank 0"), std::string::npos) << r.output;
  bool flagged = false;
  for (const auto& j : read_jsonl(metrics)) {
    const auto& rank1 = j.at("ranks")[1];
    if (rank1.value("stalled", false)) {
      flagged = true;
      EXPECT_LT(rank1.at("steps").get<int64_t>(), 20);
      EXPECT_EQ(rank1.at("has_work"), true);
      EXPECT_EQ(j.at("ranks")[0].at("stalled"), false);
    }
  }
  EXPECT_TRUE(flagged);
}

TEST_F(Health, MetricsAreAppendedToAnExistingFile) {
  const std::string out = tmp_path("health-out-append.jsonl");
  const std::string metrics = tmp_path("health-metrics-append.jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  std::ofstream(metrics) << R"({"earlier":true})"
                         << "\n";
  auto r = mpirun_tpinfer(1, args(out) + "--metrics " + metrics + " --health-interval 60");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = read_jsonl(metrics);
  // The earlier line, the first step's and the final one (60 s never passed).
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].at("earlier"), true);
  EXPECT_EQ(lines[1].at("requests_done"), 0);
  EXPECT_EQ(lines[2].at("requests_done"), kRequests);
  EXPECT_EQ(lines[2].at("final"), true);
}

TEST_F(Health, AMetricsFileThatCannotBeOpenedFailsBeforeAnyWork) {
  const std::string out = tmp_path("health-out-badpath.jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  auto r = mpirun_tpinfer(2, args(out) + "--metrics /nonexistent-dir/m.jsonl");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("tpinfer: error: cannot open metrics file /nonexistent-dir/m.jsonl: No "
                          "such file or directory"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(!fs::exists(out) || fs::file_size(out) == 0);
}

TEST_F(Health, ANonPositiveIntervalIsAUsageError) {
  const std::string out = tmp_path("health-out-interval.jsonl");
  for (const char* v : {"0", "-1"}) {
    auto r = tpinfer_cli(args(out) + "--health-interval " + v);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(
        r.output.find("--health-interval " + std::string(v) + ": must be a finite number > 0"),
        std::string::npos)
        << r.output;
  }
  // Also from the environment, like every option.
  auto r = run_shell("TPINFER_HEALTH_INTERVAL=0 " + std::string(TPINFER_BIN) + " " + args(out));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--health-interval 0: must be a finite number > 0"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace tpinfer::test
