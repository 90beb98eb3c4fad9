// Whole jobs under mpirun: layouts agree, bad input is reported per line,
// bad setups fail with one line and exit code 2, the demo runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

// A model whose heads allow TP 1, 2, 4 with KV heads split (tp<=2) and replicated (tp=4),
// a vocab that TP 4 does not divide, and q/k/v bias.
const std::string kConfig =
    config_json({"Qwen2ForCausalLM", 128, 256, 2, 8, 2, 1001, 256,
                 R"({"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
         "attention_bias": true, "bos_token_id": 1, "eos_token_id": 2})"});

class Jobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("jobs", kConfig, 3);
    ASSERT_FALSE(model_.empty());
    // Prompts of mixed lengths, greedy and seeded sampling, per-request limits.
    std::ofstream in(tmp_path("jobs-input.jsonl"));
    for (int i = 0; i < 24; ++i) {
      nlohmann::json j;
      j["id"] = "r" + std::to_string(i);
      std::vector<int> prompt;
      for (int t = 0; t < 3 + (i * 37) % 90; ++t) prompt.push_back(3 + (i * 131 + t * 17) % 990);
      j["prompt_tokens"] = prompt;
      j["max_new_tokens"] = 4 + (i * 7) % 20;
      if (i % 3 == 1) {
        j["temperature"] = 0.9;
        j["top_p"] = 0.95;
        j["seed"] = 100 + i;
      }
      if (i % 5 == 2) {
        j["temperature"] = 1.2;
        j["top_k"] = 20;
      }
      in << j.dump() << "\n";
    }
  }

  // Runs one layout and returns its results by id.
  static std::map<std::string, nlohmann::json> run_layout(int np, int tp, const std::string& tag,
                                                          const std::string& extra = "") {
    const std::string out = tmp_path("jobs-out-" + tag + ".jsonl");
    fs::remove(out);
    auto r =
        mpirun_tpinfer(np, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                               " --output " + out + " --tp " + std::to_string(tp) + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("tpinfer: done: 24 requests (0 errors)"), std::string::npos)
        << r.output;
    return results_by_id(out);
  }

  // A run of the demo job with `args` added to `common` is a usage error:
  // exit 2 and the line `message`.
  void expect_usage_error(const std::string& common, const std::string& args,
                          const std::string& message) {
    const auto bad = mpirun_tpinfer(1, common + " " + args);
    EXPECT_EQ(bad.exit_code, 2) << args << "\n" << bad.output;
    EXPECT_NE(bad.output.find(message), std::string::npos) << args << "\n" << bad.output;
  }

  static void expect_same(const std::map<std::string, nlohmann::json>& a,
                          const std::map<std::string, nlohmann::json>& b) {
    ASSERT_EQ(a.size(), 24u);
    ASSERT_EQ(b.size(), a.size());
    for (const auto& [id, ra] : a) {
      ASSERT_TRUE(b.count(id)) << id;
      const auto& rb = b.at(id);
      EXPECT_EQ(ra["tokens"], rb["tokens"]) << id;
      EXPECT_EQ(ra["finish_reason"], rb["finish_reason"]) << id;
      EXPECT_EQ(ra["prompt_tokens"], rb["prompt_tokens"]) << id;
      EXPECT_EQ(ra["completion_tokens"], rb["completion_tokens"]) << id;
    }
  }

  static std::map<std::string, nlohmann::json>& reference() {
    static std::map<std::string, nlohmann::json> ref = run_layout(1, 1, "ref");
    return ref;
  }

  static std::string model_;
};
std::string Jobs::model_;

TEST_F(Jobs, OneRankResultsAreComplete) {
  const auto& ref = reference();
  ASSERT_EQ(ref.size(), 24u);
  for (const auto& [id, r] : ref) {
    EXPECT_GE(r["completion_tokens"].get<int>(), 1) << id;
    EXPECT_EQ(r["tokens"].size(), r["completion_tokens"].get<size_t>());
    const int cap = r["completion_tokens"].get<int>();
    EXPECT_TRUE(r["finish_reason"] == "length" || r["finish_reason"] == "stop") << id;
    if (r["finish_reason"] == "length") {
      const int i = std::stoi(id.substr(2));
      EXPECT_EQ(cap, 4 + (i * 7) % 20) << id;
    }
  }
}

// The start line reports rank 0's memory, which holds at least its weights.
TEST_F(Jobs, TheStartLineReportsTheMemoryInUse) {
  const std::string out = tmp_path("jobs-out-memory.jsonl");
  fs::remove(out);
  auto r = mpirun_tpinfer(
      1, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto at = r.output.find("; rank 0: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const double mib = std::stod(r.output.substr(at + 10));
  EXPECT_NE(r.output.find(" MiB in use", at), std::string::npos) << r.output;
  auto info = tpinfer_cli("info --model " + model_);
  const auto w = info.output.find("weights in file: ");
  ASSERT_NE(w, std::string::npos) << info.output;
  const double weight_mib = std::stod(info.output.substr(w + 17)) / (1 << 20);
  EXPECT_GE(mib + 0.5, weight_mib) << r.output;  // the printed figure is rounded to a MiB
  EXPECT_LT(mib, 1024) << r.output;
}

TEST_F(Jobs, TensorParallelTwoMatchesOneRank) {
  expect_same(reference(), run_layout(2, 2, "tp2"));
}
TEST_F(Jobs, TensorParallelFourMatchesOneRank) {
  expect_same(reference(), run_layout(4, 4, "tp4"));
}
TEST_F(Jobs, DataParallelTwoMatchesOneRank) {
  expect_same(reference(), run_layout(2, 1, "dp2"));
}
TEST_F(Jobs, DataParallelTwoByTensorParallelTwoMatchesOneRank) {
  expect_same(reference(), run_layout(4, 2, "dp2tp2"));
}
// Eight ranks (oversubscribed here; the multi-GPU layouts of issue 11): TP=8
// replicates the 2 KV heads, and DP x TP in both directions.
TEST_F(Jobs, TensorParallelEightMatchesOneRank) {
  expect_same(reference(), run_layout(8, 8, "tp8"));
}
TEST_F(Jobs, DataParallelFourByTensorParallelTwoMatchesOneRank) {
  expect_same(reference(), run_layout(8, 2, "dp4tp2"));
}
TEST_F(Jobs, DataParallelTwoByTensorParallelFourMatchesOneRank) {
  expect_same(reference(), run_layout(8, 4, "dp2tp4"));
}
TEST_F(Jobs, SmallBatchesAndStepsMatch) {
  // Other batch neighbours, chunked prefill: the same results.
  expect_same(reference(), run_layout(1, 1, "small", "--max-batch 3 --max-step-tokens 16"));
}
TEST_F(Jobs, LongestOutputFirstAndSmallDecodeStepsMatch) {
  // Another start order and prompts spread beside decodes: the same results.
  expect_same(reference(), run_layout(2, 1, "order",
                                      "--admission longest-output --decode-step-tokens 12 "
                                      "--max-batch 6 --max-step-tokens 64"));
}
TEST_F(Jobs, ArrivalOrderWithoutTheDecodeStepCapMatches) {
  // The scheduling before its defaults changed (file order, no cap): the same results.
  expect_same(reference(), run_layout(1, 1, "arrival",
                                      "--admission arrival --decode-step-tokens 0 "
                                      "--max-batch 6 --max-step-tokens 64"));
}
TEST_F(Jobs, PreemptionUnderATinyKvCacheMatches) {
  // 40 blocks of 4 tokens hold the longest request (29 blocks) but not the batch:
  // sequences are preempted and recomputed.
  const std::string out = tmp_path("jobs-out-tiny.jsonl");
  fs::remove(out);
  auto r = mpirun_tpinfer(2, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                                 " --output " + out +
                                 " --tp 2 --block-size 4 --kv-blocks 40 --max-batch 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find(" 0 preemptions"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("batches of up to 8 sequences and 512 tokens"), std::string::npos)
      << r.output;
  const auto got = results_by_id(out);
  expect_same(reference(), got);
}

// --kv-cache-dtype fp8: the job runs through (TP=2, chunked prefill, so steps
// read keys that earlier steps cached), the start line says so, and the same
// --kv-cache-mb holds four times the blocks of the fp32 cache.
TEST_F(Jobs, Fp8KvCacheRunsAndHoldsFourTimesTheBlocks) {
  auto blocks_of = [](const std::string& output) {
    const auto at = output.find("KV cache ");
    return at == std::string::npos ? -1 : std::stoi(output.substr(at + 9));
  };
  const std::string out32 = tmp_path("jobs-out-kv32.jsonl"), out8 = tmp_path("jobs-out-kv8.jsonl");
  fs::remove(out32);
  fs::remove(out8);
  const std::string common = "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                             " --tp 2 --kv-cache-mb 1 --max-step-tokens 16 --output ";
  auto r32 = mpirun_tpinfer(2, common + out32);
  auto r8 = mpirun_tpinfer(2, common + out8 + " --kv-cache-dtype fp8");
  ASSERT_EQ(r32.exit_code, 0) << r32.output;
  ASSERT_EQ(r8.exit_code, 0) << r8.output;
  EXPECT_NE(r8.output.find("fp8 KV cache"), std::string::npos) << r8.output;
  // The cpu backend's default batch beside the step budget asked for.
  EXPECT_NE(r8.output.find("batches of up to 64 sequences and 16 tokens"), std::string::npos)
      << r8.output;
  EXPECT_NE(r8.output.find("tpinfer: done: 24 requests (0 errors)"), std::string::npos);
  ASSERT_GT(blocks_of(r32.output), 0) << r32.output;
  EXPECT_EQ(blocks_of(r8.output), 4 * blocks_of(r32.output)) << r8.output;
  EXPECT_EQ(results_by_id(out8).size(), 24u);
  auto bad =
      mpirun_tpinfer(1, common + tmp_path("jobs-out-kvbad.jsonl") + " --kv-cache-dtype int4");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--kv-cache-dtype int4 is not one of auto, fp8"), std::string::npos)
      << bad.output;
}

// The cuda options are checked before anything starts, on the cpu backend too
// (where they have nothing to do; the gpu tests run what they switch).
TEST_F(Jobs, BadCudaOptionsAreUsageErrors) {
  const std::string common = "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                             " --output " + tmp_path("jobs-out-ar.jsonl");
  expect_usage_error(common, "--custom-all-reduce-kb -4",
                     "--custom-all-reduce-kb -4 is not in 0..65536");
  expect_usage_error(common, "--cuda-pdl maybe", "--cuda-pdl maybe is not one of on, off");
  expect_usage_error(common, "--cuda-prefill-attention tma",
                     "--cuda-prefill-attention tma is not one of auto, mma, wgmma");
}

// The scheduling options' bad values: one line naming the option, exit 2.
TEST_F(Jobs, BadSchedulingOptionsAreUsageErrors) {
  const std::string common = "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                             " --output " + tmp_path("jobs-out-sched.jsonl");
  expect_usage_error(common, "--admission shortest",
                     "--admission shortest is not one of arrival, longest-output");
  expect_usage_error(common, "--decode-step-tokens -1", "--decode-step-tokens must be >= 0");
  EXPECT_FALSE(fs::exists(tmp_path("jobs-out-sched.jsonl")));
}

TEST_F(Jobs, BadLinesBecomeErrorResultsAndTheJobGoesOn) {
  const std::string in = tmp_path("jobs-bad.jsonl"), out = tmp_path("jobs-bad-out.jsonl");
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5, 6, 7], "max_new_tokens": 3})"
                       "\n"
                    << "not json\n"
                    << R"({"prompt_tokens": [1]})"
                       "\n"
                    << R"({"id": "b", "prompt": "hello"})"
                       "\n"
                    << R"({"id": "a", "prompt_tokens": [1]})"
                       "\n"
                    << R"({"id": "c", "prompt_tokens": [1, 99999]})"
                       "\n"
                    << "\n"
                    << R"({"id": 7, "prompt_tokens": [9], "max_new_tokens": 2})"
                       "\n";
  fs::remove(out);
  auto r = mpirun_tpinfer(2, "run --model " + model_ + " --input " + in + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("7 requests (5 errors)"), std::string::npos) << r.output;
  auto res = results_by_id(out);
  ASSERT_EQ(res.size(), 7u);
  EXPECT_EQ(res.at("\"a\"")["completion_tokens"], 3);
  EXPECT_EQ(res.at("7")["completion_tokens"], 2);
  EXPECT_EQ(res.at("line:2")["line"], 2);
  EXPECT_NE(res.at("line:2")["error"].get<std::string>().find("JSON"), std::string::npos);
  EXPECT_EQ(res.at("line:3")["line"], 3);
  EXPECT_NE(res.at("\"b\"")["error"].get<std::string>().find("this model has no tokenizer"),
            std::string::npos);
  EXPECT_EQ(res.at("\"c\"")["line"], 6);
  // The repeated id is reported by line, so "a" keeps exactly one result.
  EXPECT_EQ(res.at("line:5")["duplicate_id"], "a");
}

TEST_F(Jobs, ARequestThatCanNeverFitTheCacheIsAnErrorResult) {
  const std::string in = tmp_path("jobs-big.jsonl"), out = tmp_path("jobs-big-out.jsonl");
  std::vector<int> long_prompt(20, 5);
  std::ofstream(in) << nlohmann::json{{"id", "big"},
                                      {"prompt_tokens", long_prompt},
                                      {"max_new_tokens", 30}}
                           .dump()
                    << "\n"
                    << R"({"id": "small", "prompt_tokens": [5, 6, 7], "max_new_tokens": 4})"
                    << "\n";
  fs::remove(out);
  // 8 blocks of 4 tokens: 32 tokens of cache, the first request needs 49.
  auto r = mpirun_tpinfer(2, "run --model " + model_ + " --input " + in + " --output " + out +
                                 " --tp 2 --block-size 4 --kv-blocks 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto res = results_by_id(out);
  ASSERT_EQ(res.size(), 2u);
  EXPECT_NE(res.at("\"big\"")["error"].get<std::string>().find("cache"), std::string::npos)
      << res.at("\"big\"").dump();
  EXPECT_EQ(res.at("\"small\"")["completion_tokens"], 4);
}

TEST_F(Jobs, StrictFailsBeforeAnyWork) {
  const std::string in = tmp_path("jobs-strict.jsonl"), out = tmp_path("jobs-strict-out.jsonl");
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5]})"
                       "\n"
                    << "{oops\n";
  fs::remove(out);
  auto r =
      mpirun_tpinfer(2, "run --strict --model " + model_ + " --input " + in + " --output " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--strict"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("line 2"), std::string::npos) << r.output;
  EXPECT_TRUE(!fs::exists(out) || fs::file_size(out) == 0);
}

TEST_F(Jobs, TpNotDividingTheWorldIsAUsageError) {
  auto r = mpirun_tpinfer(3, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                                 " --output " + tmp_path("jobs-never.jsonl") + " --tp 2");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--tp 2 does not divide the world size 3"), std::string::npos)
      << r.output;
}

TEST_F(Jobs, TpNotDividingTheHeadsIsAModelError) {
  auto r = mpirun_tpinfer(3, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") +
                                 " --output " + tmp_path("jobs-never.jsonl") + " --tp 3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("num_attention_heads"), std::string::npos) << r.output;
  // Printed once (by rank 0), not once per rank.
  size_t lines = 0;
  for (size_t at = r.output.find("tpinfer: error"); at != std::string::npos;
       at = r.output.find("tpinfer: error", at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << r.output;
}

TEST_F(Jobs, MissingModelFileIsOneClearLine) {
  auto r = mpirun_tpinfer(2, "run --model /nonexistent.h5 --input " + tmp_path("jobs-input.jsonl") +
                                 " --output " + tmp_path("jobs-never.jsonl"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/nonexistent.h5"), std::string::npos) << r.output;
}

TEST_F(Jobs, ExistingOutputIsNeverOverwritten) {
  const std::string out = tmp_path("jobs-existing.jsonl");
  std::ofstream(out) << "{\"id\": \"keep\"}\n";
  auto r = mpirun_tpinfer(
      2, "run --model " + model_ + " --input " + tmp_path("jobs-input.jsonl") + " --output " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("refusing to overwrite"), std::string::npos) << r.output;
  EXPECT_EQ(read_jsonl(out).size(), 1u);
}

TEST_F(Jobs, InfoReportsPerRankBytes) {
  auto r = tpinfer_cli("info --model " + model_ + " --tp 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 8 heads of 16 over 2 ranks: 4 q heads and 1 kv head each.
  EXPECT_NE(r.output.find("rank 1:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 q heads, 1 kv heads"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vocab rows [501, 1001)"), std::string::npos) << r.output;
}

TEST(Demo, TheReadmeDemoJobRuns) {
  const std::string out = tmp_path("demo.jsonl");
  auto r = run_shell("BUILD_DIR=" + fs::path(TPINFER_BIN).parent_path().string() + " bash " +
                     TPINFER_SOURCE_DIR + "/tools/demo.sh --no-build " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto res = results_by_id(out);
  EXPECT_EQ(res.size(), 36u);
  // The trained model writes English words: most continuations are mostly
  // letters and spaces, and the greedy ones are the same every run.
  int wordy = 0;
  for (const auto& [id, j] : res) {
    EXPECT_FALSE(j.contains("error")) << j.dump();
    EXPECT_GE(j["completion_tokens"].get<int>(), 1);
    ASSERT_TRUE(j.contains("text")) << j.dump();
    const std::string text = j["text"];
    const auto letters = std::count_if(text.begin(), text.end(), [](char c) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == ' ';
    });
    wordy += text.size() >= 8 && letters >= 0.8 * static_cast<double>(text.size());
  }
  EXPECT_GE(wordy, 30) << "of 36 continuations look like words";
  EXPECT_NE(r.output.find("tpinfer: done: 36 requests (0 errors)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tpinfer::test

namespace tpinfer::test {
namespace {

// bench runs on the cpu backend from a config with random weights and reports
// every scenario with a positive value and a roofline ratio.
TEST(Bench, ReportsEveryScenarioFromRandomWeights) {
  const std::string json = tmp_path("bench.json");
  std::filesystem::remove(json);
  auto r = mpirun_tpinfer(2, std::string("bench --tp 2 --model-config ") + TPINFER_SOURCE_DIR +
                                 "/inputs/demo-config.json --random-weights --fixed 32/8 "
                                 "--requests 8 --repeats 2 --offline-repeats 1 --max-step-tokens "
                                 "1024 --json " +
                                 json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(std::ifstream(json));
  std::vector<std::string> names;
  for (const auto& res : j["results"]) {
    names.push_back(res["scenario"]);
    EXPECT_GT(res["value"].get<double>(), 0) << res.dump();
    EXPECT_GT(res["ratio_to_roofline"].get<double>(), 0) << res.dump();
    EXPECT_EQ(res["samples"].size(), res["scenario"] == "offline 32/8 x8" ? 1u : 2u) << res.dump();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"decode batch 1", "decode batch 64", "prefill 1023",
                                             "offline 32/8 x8"}));
  EXPECT_EQ(j["tp"], 2);
  // The cpu backend's default batch, and the step budget asked for (a preset of
  // bench's once lost to the option's own default: offline ran at batch 64).
  EXPECT_EQ(j["max_batch"], 64);
  EXPECT_EQ(j["max_step_tokens"], 1024);
}

// A decode scenario whose batch does not fit the KV cache is skipped rather
// than timed at the smaller batch preemption leaves; the step profile counts
// the offline run's preemptions.
TEST(Bench, SaysWhatTheKvCacheCannotHold) {
  auto r = mpirun_tpinfer(1, std::string("bench --model-config ") + TPINFER_SOURCE_DIR +
                                 "/inputs/demo-config.json --random-weights --scenarios "
                                 "decode8@64,offline --fixed 32/8 --requests 8 --repeats 1 "
                                 "--offline-repeats 1 --kv-blocks 12 --step-profile");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("decode batch 8 at context 64: skipped, needs 56 KV blocks and the "
                          "cache has 12"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(" preemptions (the KV cache ran out"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("offline 32/8 x8"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tpinfer::test

namespace tpinfer::test {
namespace {

// Options come from the command line, then --config FILE, then TPINFER_* variables.
TEST(Options, ConfigFileAndEnvironmentWithCommandLinePrecedence) {
  const std::string model = tmp_path("opts-model.h5"), in = tmp_path("opts-in.jsonl");
  ASSERT_EQ(tpinfer_cli(std::string("make-model --config ") + TPINFER_SOURCE_DIR +
                        "/inputs/demo-config.json --output " + model + " --dtype float32")
                .exit_code,
            0);
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5, 6, 7], "ignore_eos": true})"
                       "\n";
  std::ofstream(tmp_path("opts.ini")) << "# run options\nmax-new-tokens = 3\ntp = 2\n";
  auto completion = [&](const std::string& env, const std::string& extra) {
    const std::string out = tmp_path("opts-out.jsonl");
    std::filesystem::remove(out);
    auto r = run_shell(env + " " + TPINFER_MPIRUN + " -np 2 " + TPINFER_BIN + " run --model " +
                       model + " --input " + in + " --output " + out + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto res = results_by_id(out);
    return res.empty() ? -1 : res.begin()->second["completion_tokens"].get<int>();
  };
  EXPECT_EQ(completion("", "--config " + tmp_path("opts.ini")), 3);
  EXPECT_EQ(completion("", "--config " + tmp_path("opts.ini") + " --max-new-tokens 5"), 5);
  EXPECT_EQ(completion("TPINFER_MAX_NEW_TOKENS=4", ""), 4);
  EXPECT_EQ(completion("TPINFER_MAX_NEW_TOKENS=4", "--config " + tmp_path("opts.ini")), 3);
  // A bad value names the option.
  auto r =
      tpinfer_cli("run --model " + model + " --input " + in + " --output x --max-new-tokens lots");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("max-new-tokens"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tpinfer::test

namespace tpinfer::test {
namespace {

// The design's promise: interrupt a job mid-run (kill -9 a random rank, or
// SIGTERM every rank as Slurm does at preemption), restart with --resume on
// another layout (DP 2, then DP 3), and the output equals an uninterrupted
// run's, each id once. On the cpu backend at one TP size that is the same
// result for every request, sampled ones included, although a restart changes
// which requests share a step and how prompts are chunked: its sums do not
// depend on the batch (src/backend/cpu/invariant_gemm.hpp).
void expect_same_results(const std::string& full, const std::string& cut) {
  const auto want = results_by_id(full), got = results_by_id(cut);  // throws on a repeated id
  EXPECT_EQ(got.size(), 300u);
  for (const auto& [id, r] : want) {
    ASSERT_TRUE(got.count(id)) << id;
    EXPECT_EQ(got.at(id), r) << id;
  }
}
// Returns the interrupted run's exit code. With `job_script`, the job runs
// under jobs/mpirun-job.sh, which must restart it with --resume by itself.
int interrupt_then_resume(const std::string& signal, const std::string& name,
                          bool job_script = false) {
  const std::string model = tmp_path("resume-model.h5"), in = tmp_path("resume-in.jsonl");
  EXPECT_EQ(tpinfer_cli(std::string("make-model --config ") + TPINFER_SOURCE_DIR +
                        "/inputs/demo-config.json --output " + model + " --seed 5")
                .exit_code,
            0);
  {
    std::ofstream f(in);
    for (int i = 0; i < 300; ++i) {
      nlohmann::json j = {{"id", "q" + std::to_string(i)}, {"max_new_tokens", 24 + i % 41}};
      std::vector<int> prompt;
      for (int t = 0; t < 8 + (i * 13) % 60; ++t) prompt.push_back(3 + (i * 31 + t * 7) % 4000);
      j["prompt_tokens"] = prompt;
      if (i % 4 == 1) j.update({{"temperature", 0.8}, {"top_k", 50}, {"seed", i}});
      f << j.dump() << "\n";
    }
  }
  const std::string full = tmp_path("resume-full.jsonl"), cut = tmp_path(name + ".jsonl");
  for (const auto& p : {full, cut}) {
    std::filesystem::remove(p);
    std::filesystem::remove(p + ".manifest.json");
  }
  const std::string args = " run --model " + model + " --input " + in + " --max-new-tokens 16 ";
  EXPECT_EQ(mpirun_tpinfer(2, args + "--output " + full).exit_code, 0);

  // At a random moment (once 10 to 109 results are in the file), signal the
  // tpinfer processes whose command line names this output: one at random for
  // -KILL, all of them otherwise.
  const int at = 10 + static_cast<int>(std::random_device{}() % 100);
  const std::string pick = signal == "KILL" ? "shuf -n 1" : "cat";
  const std::string interrupt =
      "( for i in $(seq 600); do [ $(cat " + cut + " 2>/dev/null | wc -l) -ge " +
      std::to_string(at) +
      " ] && break; sleep 0.02; done; for p in $(pgrep -x tpinfer); do grep "
      "-q " +
      name + " /proc/$p/cmdline && echo $p; done | " + pick + " | xargs -r kill -" + signal +
      " ) & ";
  if (job_script) {
    auto r = run_shell(interrupt + "TPINFER_BIN=" + TPINFER_BIN + " bash " + TPINFER_SOURCE_DIR +
                       "/jobs/mpirun-job.sh 2 " + model + " " + in + " " + cut +
                       " --max-new-tokens 16 --checkpoint-interval 0.05; rc=$?; wait; exit $rc");
    EXPECT_NE(r.output.find(", restart 1 of 3 with --resume"), std::string::npos) << r.output;
    expect_same_results(full, cut);
    return r.exit_code;
  }
  auto stopped =
      run_shell(interrupt + TPINFER_MPIRUN + " -np 2 " + TPINFER_BIN + args + "--output " + cut +
                " --checkpoint-interval 0.05; rc=$?; wait; exit $rc");
  const auto partial = read_jsonl(cut);  // every line whole
  EXPECT_GE(partial.size(), static_cast<size_t>(at)) << "interrupted at " << at;
  EXPECT_LT(partial.size(), 300u) << "the job finished before the interruption";

  auto resumed = mpirun_tpinfer(3, args + "--resume --output " + cut);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_results(full, cut);
  return stopped.exit_code;
}

TEST(Resume, KillARankMidRunThenResumeGivesTheUninterruptedResults) {
  EXPECT_NE(interrupt_then_resume("KILL", "resume-killed"), 0);
}

TEST(Resume, SigtermDrainsWithExit75ThenResumeGivesTheUninterruptedResults) {
  EXPECT_EQ(interrupt_then_resume("TERM", "resume-termed"), 75);
}

// jobs/mpirun-job.sh restarts a drained job (exit 75) with --resume and finishes.
TEST(Resume, TheWorkstationJobScriptRestartsOnExit75) {
  EXPECT_EQ(interrupt_then_resume("TERM", "resume-script", /*job_script=*/true), 0);
}

// ... and a job whose rank was killed (mpirun exits 128 + N).
TEST(Resume, TheWorkstationJobScriptRestartsAfterAKilledRank) {
  EXPECT_EQ(interrupt_then_resume("KILL", "resume-script-killed", /*job_script=*/true), 0);
}

TEST(Resume, RefusesChangedSettingsAndOutputsWithoutAManifest) {
  const std::string in = tmp_path("resume-in2.jsonl"), out = tmp_path("resume-out2.jsonl"),
                    model = tmp_path("resume-model2.h5");
  ASSERT_EQ(tpinfer_cli(std::string("make-model --config ") + TPINFER_SOURCE_DIR +
                        "/inputs/demo-config.json --output " + model)
                .exit_code,
            0);
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5, 6]})"
                       "\n";
  std::filesystem::remove(out);
  std::filesystem::remove(out + ".manifest.json");
  const std::string base = "run --model " + model + " --input " + in + " --output " + out;
  ASSERT_EQ(tpinfer_cli(base + " --max-new-tokens 4").exit_code, 0);
  auto r = tpinfer_cli(base + " --max-new-tokens 5 --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("max_new_tokens\":4"), std::string::npos) << r.output;
  // Same settings: nothing left to do, nothing written twice.
  r = tpinfer_cli(base + " --max-new-tokens 4 --resume");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_jsonl(out).size(), 1u);
  // The KV cache's storage type is a setting too.
  r = tpinfer_cli(base + " --max-new-tokens 4 --kv-cache-dtype fp8 --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("kv_cache_dtype"), std::string::npos) << r.output;
  std::filesystem::remove(out + ".manifest.json");
  r = tpinfer_cli(base + " --max-new-tokens 4 --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no manifest"), std::string::npos) << r.output;
}

// --deterministic is recorded with the TP size; a resume keeps both (on the
// cpu backend the results are the same bytes either way).
TEST(Resume, ADeterministicJobResumesOnlyDeterministicAtItsTpSize) {
  const std::string in = tmp_path("resume-det-in.jsonl"), out = tmp_path("resume-det-out.jsonl"),
                    plain = tmp_path("resume-det-plain.jsonl");
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [5, 6, 7], "temperature": 0.9, "seed": 3})"
                       "\n";
  for (const std::string& f : {out, plain}) {
    std::filesystem::remove(f);
    std::filesystem::remove(f + ".manifest.json");
  }
  const std::string base = "run --model " + std::string(TPINFER_SOURCE_DIR) +
                           "/inputs/demo-model.h5 --input " + in + " --max-new-tokens 6 --output ";
  ASSERT_EQ(tpinfer_cli(base + out + " --deterministic").exit_code, 0);
  ASSERT_EQ(tpinfer_cli(base + plain).exit_code, 0);
  EXPECT_EQ(read_jsonl(out), read_jsonl(plain));  // the cpu backend always is
  const nlohmann::json m = nlohmann::json::parse(std::ifstream(out + ".manifest.json"));
  EXPECT_EQ(m["settings"]["deterministic"], true);
  EXPECT_EQ(m["settings"]["tp"], 1);
  auto r = tpinfer_cli(base + out + " --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("was written with --deterministic"), std::string::npos) << r.output;
  r = mpirun_tpinfer(2, base + out + " --deterministic --tp 2 --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("resume at --tp 1"), std::string::npos) << r.output;
  r = tpinfer_cli(base + out + " --deterministic --resume");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = tpinfer_cli(base + plain + " --deterministic --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("started without --deterministic"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tpinfer::test

namespace tpinfer::test {
namespace {

// A model file that carries a tokenizer takes text prompts and returns text.
TEST(TextRequests, PromptsAreTokenizedAndResultsDecoded) {
  const std::string tok =
      std::string(TPINFER_SOURCE_DIR) + "/tests/data/tokenizer/tiny_llama3.tokenizer.json";
  const std::string cfg = tmp_path("text-config.json"), model = tmp_path("text-model.h5"),
                    in = tmp_path("text-in.jsonl"), out = tmp_path("text-out.jsonl");
  std::ofstream(cfg) << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 600, "max_position_embeddings": 256,
    "eos_token_id": 557, "torch_dtype": "float32"})";
  auto made =
      tpinfer_cli("make-model --config " + cfg + " --output " + model + " --tokenizer " + tok);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  std::ofstream(in) << R"({"id": "t1", "prompt": "Hello world, tokenizers!", "max_new_tokens": 6})"
                    << "\n"
                    << R"({"id": "t2", "prompt_tokens": [72, 101], "max_new_tokens": 3})"
                    << "\n"
                    << R"({"id": "t3", "prompt": "", "max_new_tokens": 2})"
                    << "\n";
  std::filesystem::remove(out);
  auto r = mpirun_tpinfer(2, "run --tp 2 --model " + model + " --input " + in + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto res = results_by_id(out);
  ASSERT_EQ(res.size(), 3u);
  // The prompt was encoded with BOS, as `tpinfer tokenize --bos` does.
  auto ids = run_shell("echo 'Hello world, tokenizers!' | " + std::string(TPINFER_BIN) +
                       " tokenize --bos --model " + model);
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  const auto encoded = nlohmann::json::parse(ids.output);
  EXPECT_EQ(encoded[0], 556);  // <|begin_of_text|>
  EXPECT_EQ(res.at("\"t1\"")["prompt_tokens"], encoded.size());
  // "text" is the generated tokens decoded (special tokens left out).
  for (const char* id : {"\"t1\"", "\"t2\""}) {
    const auto& j = res.at(id);
    ASSERT_TRUE(j.contains("text")) << j.dump();
    nlohmann::json known = nlohmann::json::array();  // ids past the tokenizer have no text
    for (const auto& t : j["tokens"])
      if (t.get<int>() < 559) known.push_back(t);
    auto back = run_shell("echo '" + known.dump() + "' | " + TPINFER_BIN +
                          " tokenize --decode --skip-special --model " + model);
    EXPECT_EQ(nlohmann::json::parse(back.output), j["text"]) << j.dump();
  }
  // An empty text is BOS alone, as Hugging Face encodes it.
  EXPECT_EQ(res.at("\"t3\"")["prompt_tokens"], 1) << res.at("\"t3\"").dump();
}

}  // namespace
}  // namespace tpinfer::test
