// tools/make_workload.py: the sharegpt kind's lengths and seeding, and the
// older kinds' files unchanged for a seed (benchmarks compare runs across
// commits on the same file).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

CommandResult make_workload(const std::string& args) {
  return run_shell(std::string("python3 ") + TPINFER_SOURCE_DIR + "/tools/make_workload.py " +
                   args);
}

struct Lengths {
  std::vector<int64_t> prompt, output;
};

// The lengths of a workload's requests, checking each line's form on the way.
Lengths lengths_of(const std::string& jsonl, int64_t vocab) {
  Lengths l;
  std::istringstream in(jsonl);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json r = nlohmann::json::parse(line);
    EXPECT_EQ(r["id"], "w" + std::to_string(l.prompt.size()));
    EXPECT_EQ(r["ignore_eos"], true);
    const auto prompt = r["prompt_tokens"].get<std::vector<int64_t>>();
    EXPECT_TRUE(std::all_of(prompt.begin(), prompt.end(), [&](int64_t t) {
      return t >= 3 && t < vocab;
    })) << line.substr(0, 200);
    l.prompt.push_back(static_cast<int64_t>(prompt.size()));
    l.output.push_back(r["max_new_tokens"].get<int64_t>());
  }
  return l;
}

double mean(const std::vector<int64_t>& v) {
  return static_cast<double>(std::accumulate(v.begin(), v.end(), int64_t{0})) /
         static_cast<double>(v.size());
}

int64_t quantile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

TEST(MakeWorkload, SharegptIsSeededWithLognormalLengthsNearTheirMeans) {
  if (run_shell("python3 --version").exit_code != 0) GTEST_SKIP() << "no python3";
  for (const int seed : {0, 1}) {
    const std::string args = "--kind sharegpt --vocab 4096 --seed " + std::to_string(seed);
    const CommandResult a = make_workload(args);
    ASSERT_EQ(a.exit_code, 0) << a.output;
    const CommandResult b = make_workload(args);
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_EQ(a.output, b.output) << "seed " << seed << " gave two different files";

    const Lengths l = lengths_of(a.output, 4096);
    ASSERT_EQ(l.prompt.size(), 1000u);
    // Standard errors over 1,000 lognormal draws (sigma 1) are about 4% of the
    // mean: these ranges are some 2.5 of them either side.
    EXPECT_GT(mean(l.prompt), 225) << "seed " << seed;
    EXPECT_LT(mean(l.prompt), 275) << "seed " << seed;
    EXPECT_GT(mean(l.output), 180) << "seed " << seed;
    EXPECT_LT(mean(l.output), 220) << "seed " << seed;
    EXPECT_GE(*std::min_element(l.prompt.begin(), l.prompt.end()), 4);
    EXPECT_LE(*std::max_element(l.prompt.begin(), l.prompt.end()), 4096);
    EXPECT_GE(*std::min_element(l.output.begin(), l.output.end()), 4);
    EXPECT_LE(*std::max_element(l.output.begin(), l.output.end()), 2048);
    // Skewed as ShareGPT is: the median well below the mean, a long right tail.
    EXPECT_LT(quantile(l.output, 0.5), 0.75 * mean(l.output)) << "seed " << seed;
    EXPECT_GT(quantile(l.output, 0.99), 4 * mean(l.output)) << "seed " << seed;
    EXPECT_LT(quantile(l.prompt, 0.5), 0.75 * mean(l.prompt)) << "seed " << seed;
  }
  const CommandResult other = make_workload("--kind sharegpt --vocab 4096 --seed 2");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output, make_workload("--kind sharegpt --vocab 4096 --seed 0").output);
}

TEST(MakeWorkload, SharegptMeansAndClipRangesAreHonoured) {
  if (run_shell("python3 --version").exit_code != 0) GTEST_SKIP() << "no python3";
  const CommandResult r = make_workload(
      "--kind sharegpt --n 400 --isl-mean 1000 --osl-mean 50 --isl 100-3000 --osl 8-400 "
      "--vocab 4096 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Lengths l = lengths_of(r.output, 4096);
  ASSERT_EQ(l.prompt.size(), 400u);
  // Ranges this tight clip some 5% of the draws, which moves the means (the
  // prompts' down, the outputs' up) but not by a fifth.
  EXPECT_NEAR(mean(l.prompt), 1000, 200);
  EXPECT_NEAR(mean(l.output), 50, 10);
  // Both ends of both ranges are reached and none is passed.
  EXPECT_EQ(*std::min_element(l.prompt.begin(), l.prompt.end()), 100);
  EXPECT_EQ(*std::max_element(l.prompt.begin(), l.prompt.end()), 3000);
  EXPECT_EQ(*std::min_element(l.output.begin(), l.output.end()), 8);
  EXPECT_EQ(*std::max_element(l.output.begin(), l.output.end()), 400);

  const CommandResult outside = make_workload("--kind sharegpt --osl-mean 3000");
  EXPECT_EQ(outside.exit_code, 2);
  EXPECT_NE(outside.output.find("--osl-mean 3000 must lie in its clip range 4-2048"),
            std::string::npos)
      << outside.output;
  const CommandResult wrong_kind = make_workload("--kind random --isl-mean 300");
  EXPECT_EQ(wrong_kind.exit_code, 2);
  EXPECT_NE(wrong_kind.output.find("--isl-mean and --osl-mean are for --kind sharegpt"),
            std::string::npos)
      << wrong_kind.output;
}

// Pinned digests of the kinds made before sharegpt: a change to any of them
// (say, a draw added to the shared random stream) shows here.
TEST(MakeWorkload, EarlierKindsAreUnchangedForTheSameSeed) {
  if (run_shell("python3 --version && sha256sum --version").exit_code != 0)
    GTEST_SKIP() << "no python3 or sha256sum";
  const std::pair<const char*, const char*> pinned[] = {
      {"--kind random", "efa46cbc20662f8434cdd1911606b3700e0304c211e02122ff3888abf7fb8cdd"},
      {"--kind fewshot --prefix-len 3",
       "f916de6d2d760505c11c96150419031d193a4571e56fa0d5b061f0387f870917"},
      {"--kind system-prompt --prefix-len 3",
       "4745ed377ce16e0a02ba73f18aaa3dff8d24816a5640b54b6049e7379a8bfe90"},
      {"--kind multiturn", "798a32d3d7a4112f6909a924fa659c2c14d376af7b0dbdf4663a89559c3a8474"},
  };
  for (const auto& [kind, digest] : pinned) {
    const CommandResult r = make_workload(
        std::string(kind) + " --n 7 --isl 5-9 --osl 2-4 --vocab 100 --seed 1 | sha256sum");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.substr(0, 64), digest) << kind;
  }
}

}  // namespace
}  // namespace tpinfer::test
