// The cpu backend against transformers on committed fixtures: each
// tests/data/hf_fixtures/NAME/ holds a Hugging Face checkpoint (hf/), prompts
// and transformers' fp32 logits of every position (fixture.json, logits.f32;
// written by tools/hf_compare.py --write-fixtures on a machine with
// transformers). The checkpoint goes through `tpinfer convert` and
// `tpinfer logits` at TP 1 and 2, as a user's would. Skipped when the
// directory is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "job_helpers.hpp"
#include "logits_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(TPINFER_SOURCE_DIR) / "tests" / "data" / "hf_fixtures";

std::vector<fs::path> fixture_dirs() {
  std::vector<fs::path> out;
  if (!fs::is_directory(kFixtures)) return out;
  for (const auto& e : fs::directory_iterator(kFixtures))
    if (fs::exists(e.path() / "fixture.json")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(HfFixtures, CpuLogitsMatchTransformers) {
  const auto dirs = fixture_dirs();
  if (dirs.empty())
    GTEST_SKIP()
        << kFixtures << " has no fixtures: generate them with "
        << "tools/hf_compare.py --write-fixtures tests/data/hf_fixtures (needs transformers; "
        << "tools/gpu.sh hf does it on the GPU machine)";
  fs::create_directories(TPINFER_TEST_TMP);
  for (const auto& dir : dirs) {
    const std::string name = dir.filename().string();
    SCOPED_TRACE("fixture " + name);
    const auto meta = read_json_file((dir / "fixture.json").string());
    const int64_t vocab = meta["vocab_size"].get<int64_t>(), rows = meta["rows"].get<int64_t>();
    const double bound = meta["bound"].get<double>();
    const std::string want_bytes =
        read_file_bytes((dir / meta["logits_file"].get<std::string>()).string());
    ASSERT_EQ(want_bytes.size(), static_cast<size_t>(rows * vocab) * sizeof(float));
    std::vector<float> want(static_cast<size_t>(rows * vocab));
    std::memcpy(want.data(), want_bytes.data(), want_bytes.size());

    const std::string model = tmp_path("fixture-" + name + ".h5");
    fs::remove(model);
    auto r = tpinfer_cli("convert --quiet --dtype fp32 --hf " + (dir / "hf").string() +
                         " --output " + model);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string prompts = tmp_path("fixture-" + name + ".jsonl");
    {
      std::ofstream in(prompts);
      for (const auto& p : meta["prompts"])
        in << nlohmann::json{{"id", p["id"]}, {"prompt_tokens", p["prompt_tokens"]}}.dump() << "\n";
    }
    for (int tp : {1, 2}) {
      const std::string out = tmp_path("fixture-" + name + "-tp" + std::to_string(tp) + ".npy");
      r = mpirun_tpinfer(tp, "logits --backend cpu --tp " + std::to_string(tp) + " --model " +
                                 model + " --input " + prompts + " --output " + out);
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const Npy got = read_npy(out);
      const auto index = read_json_file(out + ".json");
      ASSERT_EQ(got.rows, rows);
      ASSERT_EQ(got.cols, vocab);
      double worst = 0;
      for (size_t i = 0; i < meta["prompts"].size(); ++i) {
        const auto& p = meta["prompts"][i];
        const int64_t row = p["row"].get<int64_t>(), n = p["rows"].get<int64_t>();
        ASSERT_EQ(index["prompts"][i]["row"].get<int64_t>(), row);
        const size_t count = static_cast<size_t>(n * vocab);
        const double err = relative_error(got.row(row), want.data() + row * vocab, count);
        EXPECT_LE(err, bound) << "prompt " << i << " at tp " << tp;
        worst = std::max(worst, err);
        // The greedy token of every position whose top-2 margin is clear of the bound.
        for (int64_t k = 0; k < n; ++k) {
          const float* w = want.data() + (row + k) * vocab;
          std::vector<float> sorted(w, w + vocab);
          std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(),
                            std::greater<float>());
          float scale = 0;
          for (int64_t v = 0; v < vocab; ++v) scale = std::max(scale, std::abs(w[v]));
          if (sorted[0] - sorted[1] <= 2 * bound * scale) continue;
          EXPECT_EQ(index["prompts"][i]["greedy"][k].get<int64_t>(),
                    std::max_element(w, w + vocab) - w)
              << "prompt " << i << " position " << k << " at tp " << tp;
        }
      }
      std::printf(
          "[ hf       ] %s (%s): tp %d, %lld positions, max relative error %.2e (bound %.0e)\n",
          name.c_str(), meta["architecture"].get<std::string>().c_str(), tp,
          static_cast<long long>(rows), worst, bound);
    }
  }
}

}  // namespace
}  // namespace tpinfer::test
