// The prefix cache as a job sees it: on a file whose requests share few-shot
// preambles, results are the same with the cache on and off at DP 1 and 2 and
// TP 1 and 2 (byte-identical, log-probabilities included),
// also when a rank is killed (kill -9) mid-run and the job is resumed, and the
// summary line and --metrics say how many prompt tokens the cache gave.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>

#include "faults_fixture.hpp"
#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

// Splits at TP 1 and 2 (KV heads 2); fp32 storage.
const std::string kPrefixConfig = config_json(
    {"LlamaForCausalLM", 128, 352, 3, 8, 2, 2000, 512,
     R"({"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2})"});
constexpr int kPrefixRequests = 72;
constexpr const char* kJobTimeout = "timeout -k 5 180 ";

// Output lines by id, each line's bytes as written.
using Lines = std::map<std::string, std::string>;

Lines lines_by_id(const std::string& path) {
  Lines out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const std::string id = nlohmann::json::parse(line).at("id").dump();
    EXPECT_TRUE(out.emplace(id, line).second) << "id " << id << " written twice in " << path;
  }
  return out;
}

// The summary's "N prompt tokens from the prefix cache (M blocks evicted)".
std::pair<long long, long long> cache_counters(const std::string& log) {
  static const std::regex re(
      R"((\d+) prompt tokens from the prefix cache \((\d+) blocks evicted\))");
  std::smatch m;
  if (!std::regex_search(log, m, re)) {
    ADD_FAILURE() << "no prefix-cache counters in the summary:\n" << log;
    return {-1, -1};
  }
  return {std::stoll(m[1]), std::stoll(m[2])};
}

class PrefixCacheJobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("prefix", kPrefixConfig, 23);
    ASSERT_FALSE(model_.empty());
    // Four few-shot preambles (lengths not multiples of the 16-token block, so
    // that a shared prefix ends inside a block), a short question each, in a
    // shuffled order; greedy and seeded sampled requests, some with n > 1,
    // top_logprobs or prompt_logprobs (scored from computed rows, never from
    // the cache), and a few prompts that are exactly a preamble.
    std::mt19937 rng(5);
    auto token = [&] { return 3 + static_cast<int>(rng() % 1990); };
    std::vector<std::vector<int>> preambles;
    for (int len : {150, 123, 77, 200}) {
      std::vector<int> p;
      for (int t = 0; t < len; ++t) p.push_back(token());
      preambles.push_back(p);
    }
    std::vector<nlohmann::json> reqs;
    for (int i = 0; i < kPrefixRequests; ++i) {
      std::vector<int> prompt = preambles[static_cast<size_t>(i % 4)];
      if (i % 17 != 5)
        for (int t = 0, n = 3 + static_cast<int>(rng() % 25); t < n; ++t) prompt.push_back(token());
      nlohmann::json j = {{"id", "q" + std::to_string(i)},
                          {"prompt_tokens", prompt},
                          {"max_new_tokens", 3 + (i * 7) % 14}};
      if (i % 3 == 1) j.update({{"temperature", 0.9}, {"top_p", 0.9}, {"seed", 700 + i}});
      if (i % 5 == 2) j.update({{"temperature", 1.1}, {"top_k", 40}});  // seeded by --seed
      if (i % 6 == 4) j.update({{"n", 3}, {"temperature", 0.8}, {"seed", 900 + i}});
      if (i % 7 == 3) j["top_logprobs"] = 3;
      if (i % 8 == 6) j["prompt_logprobs"] = true;
      reqs.push_back(j);
    }
    std::shuffle(reqs.begin(), reqs.end(), rng);
    input_ = tmp_path("prefix-input.jsonl");
    std::ofstream in(input_);
    for (const auto& j : reqs) in << j.dump() << "\n";
  }

  static std::string fresh_output(const std::string& name) {
    const std::string out = tmp_path("prefix-" + name + ".jsonl");
    fs::remove(out);
    fs::remove(out + ".manifest.json");
    return out;
  }

  static std::string job(int np, int tp, bool cache, const std::string& out,
                         const std::string& extra = "") {
    return std::string(kJobTimeout) + TPINFER_MPIRUN + " -np " + std::to_string(np) + " " +
           TPINFER_BIN + " run --model " + model_ + " --input " + input_ + " --output " + out +
           " --tp " + std::to_string(tp) + " --seed 3 --max-batch 12 --checkpoint-interval 0.05 " +
           "--prefix-cache " + (cache ? "on " : "off ") + extra;
  }

  // A whole run; its log (the summary line included).
  static std::string run_job(int np, int tp, bool cache, const std::string& out,
                             const std::string& extra = "") {
    const CommandResult r = run_shell(job(np, tp, cache, out, extra));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }

  // The cache-off results of one layout, run once.
  static const Lines& reference(int np, int tp) {
    static std::map<std::pair<int, int>, Lines> done;
    auto it = done.find({np, tp});
    if (it != done.end()) return it->second;
    const std::string out = fresh_output("ref-" + std::to_string(np) + "-" + std::to_string(tp));
    run_job(np, tp, false, out);
    return done[{np, tp}] = lines_by_id(out);
  }

  // The same bytes, log-probabilities included: the cpu backend's sums do
  // not depend on a step's batch or chunk shapes (invariant_gemm.hpp).
  static void expect_identical(const Lines& want, const Lines& got) {
    ASSERT_EQ(want.size(), static_cast<size_t>(kPrefixRequests));
    EXPECT_EQ(got.size(), want.size());
    for (const auto& [id, line] : want) {
      const auto it = got.find(id);
      ASSERT_NE(it, got.end()) << id << " has no result";
      EXPECT_EQ(it->second, line) << id;
    }
  }

  static std::string model_, input_;
};
std::string PrefixCacheJobs::model_, PrefixCacheJobs::input_;

// Cache on and off give the same bytes at every layout; the cache is used
// (prompt tokens come from it) and the file's features all appear in the
// output, so the comparison covers them.
TEST_F(PrefixCacheJobs, ResultsAreTheSameWithTheCacheOnAndOffAtDpAndTp) {
  for (const auto& [np, tp] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {2, 2}, {4, 2}}) {
    SCOPED_TRACE("-np " + std::to_string(np) + " --tp " + std::to_string(tp));
    const std::string out = fresh_output("on");
    const std::string log = run_job(np, tp, true, out);
    EXPECT_GT(cache_counters(log).first, 0);
    expect_identical(reference(np, tp), lines_by_id(out));
  }
  // The reference exercises n, top_logprobs and prompt logprobs.
  const Lines& ref = reference(1, 1);
  int many = 0, top = 0, prompt_scored = 0;
  for (const auto& [id, line] : ref) {
    const auto j = nlohmann::json::parse(line);
    many += j.contains("choices") && j["choices"].size() == 3;
    top += line.find("top_logprobs") != std::string::npos;
    prompt_scored += j.contains("prompt_logprobs");
  }
  EXPECT_GT(many, 0) << ref.begin()->second;
  EXPECT_GT(top, 0) << ref.begin()->second;
  EXPECT_GT(prompt_scored, 0) << ref.begin()->second;
}

// A KV cache too small to keep every preamble: cached blocks are evicted (and
// sequences preempted) and the results still do not change.
TEST_F(PrefixCacheJobs, EvictionUnderATightCacheLeavesTheResultsUnchanged) {
  const std::string tight = "--kv-blocks 40";
  const std::string off = fresh_output("tight-off"), on = fresh_output("tight-on");
  const std::string off_log = run_job(1, 1, false, off, tight);
  const std::string on_log = run_job(1, 1, true, on, tight);
  const auto [cached, evicted] = cache_counters(on_log);
  EXPECT_GT(cached, 0) << on_log;
  EXPECT_GT(evicted, 0) << on_log;
  expect_identical(lines_by_id(off), lines_by_id(on));
}

// The summary line counts the prompt tokens the cache gave: positive with it
// on, zero with it off (and no evictions without a cache).
TEST_F(PrefixCacheJobs, TheSummaryReportsPromptTokensFromTheCacheOnlyWhenItIsOn) {
  const auto on = cache_counters(run_job(1, 1, true, fresh_output("summary-on")));
  const auto off = cache_counters(run_job(1, 1, false, fresh_output("summary-off")));
  EXPECT_GT(on.first, 0);
  EXPECT_EQ(off.first, 0);
  EXPECT_EQ(off.second, 0);
  // Four preambles of 77..200 tokens before 72 requests: most of the prompt
  // tokens are shared; at least one full block a request after the first few.
  EXPECT_GE(on.first, 16 * (kPrefixRequests - 8)) << on.first;
}

// --metrics: the final line's prefix-cache counters are the summary's (group
// leaders summed once), with the hit rate of the prompt tokens done; a TP
// peer reports none of its own.
TEST_F(PrefixCacheJobs, TheFinalMetricsLineHasTheSummarysCacheCountersAndHitRate) {
  for (const auto& [tp, cache] :
       std::vector<std::pair<int, bool>>{{1, true}, {2, true}, {1, false}}) {
    SCOPED_TRACE("-np 2 --tp " + std::to_string(tp) + (cache ? ", cache on" : ", cache off"));
    const std::string metrics = tmp_path("prefix-health.jsonl");
    fs::remove(metrics);
    const std::string log = run_job(2, tp, cache, fresh_output("metrics"),
                                    "--metrics " + metrics + " --health-interval 0.2");
    const auto [cached, evicted] = cache_counters(log);
    const auto lines = read_jsonl(metrics);
    ASSERT_FALSE(lines.empty()) << log;
    const nlohmann::json& last = lines.back();
    ASSERT_EQ(last.at("final"), true) << last.dump();
    EXPECT_EQ(last.at("prefix_cache_tokens"), cached) << last.dump();
    EXPECT_EQ(last.at("evicted_blocks"), evicted) << last.dump();
    const int64_t prompt = last.at("prompt_tokens").get<int64_t>();
    EXPECT_NE(log.find(std::to_string(prompt) + " prompt tokens,"), std::string::npos)
        << prompt << "\n"
        << log;
    // Over the sequences' prompts: a request with n completions counts n.
    int64_t sequence_prompts = 0;
    for (const auto& r : read_jsonl(input_))
      sequence_prompts += r.value("n", 1) * static_cast<int64_t>(r["prompt_tokens"].size());
    EXPECT_NEAR(last.at("prefix_cache_hit_rate").get<double>(),
                static_cast<double>(cached) / static_cast<double>(sequence_prompts), 1e-4)
        << last.dump();
    EXPECT_LE(last.at("prefix_cache_hit_rate").get<double>(), 1.0);
    if (cache)
      EXPECT_GT(cached, 0);
    else
      EXPECT_EQ(cached, 0);
    ASSERT_EQ(last.at("ranks").size(), 2u) << last.dump();
    EXPECT_TRUE(last["ranks"][0].contains("prefix_cache")) << last.dump();
    EXPECT_EQ(last["ranks"][1].contains("prefix_cache"), tp == 1) << last.dump();
  }
}

// kill -9 of a rank while the cache is on, then --resume (with the cache on,
// or switched off or on across the resume: the results do not depend on it):
// the cache-off uninterrupted results exactly.
TEST_F(PrefixCacheJobs, KilledMidRunAndResumedGivesTheCacheOffResultsExactly) {
  struct Case {
    int np, tp, rank;
    bool cache_before, cache_after;
  };
  int interrupted = 0;
  const std::vector<Case> cases = {{1, 1, 0, true, true},
                                   {2, 1, 1, true, true},
                                   {2, 2, 0, true, true},
                                   {2, 2, 1, true, false},
                                   {2, 1, 0, false, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE("-np " + std::to_string(c.np) + " --tp " + std::to_string(c.tp) +
                 ", kill -9 of rank " + std::to_string(c.rank) + ", cache " +
                 (c.cache_before ? "on" : "off") + " then " + (c.cache_after ? "on" : "off"));
    const Lines& want = reference(c.np, c.tp);
    const std::string out = fresh_output("kill");
    // Some results out, well before the last: the kill lands mid-run.
    const CommandResult killed =
        run_shell(on_rank_later(out, kPrefixRequests / 4, 0.0, c.rank, "kill -KILL $p") +
                  job(c.np, c.tp, c.cache_before, out) + "; rc=$?; wait; exit $rc");
    EXPECT_TRUE(killed.exit_code == 137 || killed.exit_code == 0) << killed.output;
    interrupted += killed.exit_code == 137;
    const CommandResult resumed = run_shell(job(c.np, c.tp, c.cache_after, out, "--resume"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    expect_identical(want, lines_by_id(out));
  }
  EXPECT_GE(interrupted, 3) << "most runs should have been killed before they finished";
}

}  // namespace
}  // namespace tpinfer::test
