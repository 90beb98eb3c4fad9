// bench on a few-shot workload from tools/make_workload.py reports the prefix
// cache's hit rate and evictions: positive with the cache on, zero with it off.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

// The offline entry of a bench JSON report for `workload`, or null.
nlohmann::json workload_entry(const nlohmann::json& report, const std::string& workload) {
  for (const auto& r : report["results"])
    if (r["scenario"] == "offline " + workload) return r;
  return nullptr;
}

TEST(PrefixBench, FewshotHitRateIsPositiveWithTheCacheAndZeroWithout) {
  if (run_shell("python3 --version").exit_code != 0) GTEST_SKIP() << "no python3";
  std::filesystem::create_directories(TPINFER_TEST_TMP);
  // 24 questions over 2 preambles of 100 tokens (6 full blocks of 16 each).
  const std::string workload = tmp_path("fewshot.jsonl");
  const CommandResult made = run_shell(std::string("python3 ") + TPINFER_SOURCE_DIR +
                                       "/tools/make_workload.py --kind fewshot --n 24 "
                                       "--prefixes 2 --prefix-len 100 --isl 10 --osl 4 "
                                       "--vocab 4096 --seed 1 > " +
                                       workload);
  ASSERT_EQ(made.exit_code, 0) << made.output;

  nlohmann::json reports[2];
  for (const bool cache : {true, false}) {
    const std::string json = tmp_path(cache ? "bench-cache-on.json" : "bench-cache-off.json");
    std::filesystem::remove(json);
    const CommandResult r = mpirun_tpinfer(
        1, std::string("bench --model-config ") + TPINFER_SOURCE_DIR +
               "/inputs/demo-config.json --random-weights --scenarios offline --fixed '' "
               "--workload " +
               workload + " --offline-repeats 1 --max-step-tokens 256 --prefix-cache " +
               (cache ? "on" : "off") + " --json " + json);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(std::string("prefix cache ") + (cache ? "on" : "off") + ": hit rate "),
              std::string::npos)
        << r.output;
    reports[cache ? 0 : 1] = nlohmann::json::parse(std::ifstream(json));
    EXPECT_EQ(reports[cache ? 0 : 1]["prefix_cache"], cache ? "on" : "off");
  }
  const nlohmann::json on = workload_entry(reports[0], workload);
  const nlohmann::json off = workload_entry(reports[1], workload);
  ASSERT_FALSE(on.is_null()) << reports[0].dump();
  ASSERT_FALSE(off.is_null()) << reports[1].dump();
  EXPECT_EQ(on["prompt_tokens"], 24 * 110);
  EXPECT_EQ(off["prompt_tokens"], 24 * 110);
  // Up to 96 tokens a request come from the cache once its preamble is in.
  EXPECT_GT(on["prefix_cache_hit_rate"].get<double>(), 0.5) << on.dump();
  EXPECT_LE(on["prefix_cache_hit_rate"].get<double>(), 96.0 / 110) << on.dump();
  EXPECT_NEAR(on["cached_tokens"].get<double>(),
              on["prefix_cache_hit_rate"].get<double>() * 24 * 110, 1e-6)
      << on.dump();
  EXPECT_EQ(off["prefix_cache_hit_rate"].get<double>(), 0.0) << off.dump();
  EXPECT_EQ(off["cached_tokens"], 0);
  EXPECT_EQ(off["evicted_blocks"], 0);
  EXPECT_EQ(on["evicted_blocks"], 0);  // the default cache holds both preambles
  // With the cache the floor computes each preamble once: a higher ceiling.
  EXPECT_GT(on["roofline"].get<double>(), off["roofline"].get<double>()) << on.dump() << "\n"
                                                                         << off.dump();
}

}  // namespace
}  // namespace tpinfer::test
