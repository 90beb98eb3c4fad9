#pragma once
// The failure tests' shared set-up: a small fp32 model that splits at TP 1, 2
// and 4, 96 greedy and seeded requests of mixed lengths, the job command, an
// uninterrupted reference per layout, and a way to act on one rank of a running
// job at a chosen moment.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "job_helpers.hpp"

namespace tpinfer::test {

namespace fs = std::filesystem;
using Results = std::map<std::string, nlohmann::json>;

// TP 1, 2 and 4 (KV heads split at 2, replicated at 4); fp32 storage.
const std::string kConfig = config_json(
    {"LlamaForCausalLM", 128, 352, 3, 8, 2, 2000, 512,
     R"({"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2})"});
constexpr int kRequests = 96;
// Bounds every run, so that a job that hangs fails its test instead of ctest's timeout.
constexpr const char* kTimeout = "timeout -k 5 120 ";

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("faults", kConfig, 11);
    ASSERT_FALSE(model_.empty());
    // Greedy and seeded sampled requests of mixed lengths, so that a run has
    // many steps and results finish throughout it.
    input_ = tmp_path("faults-input.jsonl");
    std::ofstream in(input_);
    for (int i = 0; i < kRequests; ++i) {
      nlohmann::json j = {{"id", "f" + std::to_string(i)}, {"max_new_tokens", 6 + (i * 11) % 40}};
      std::vector<int> prompt;
      for (int t = 0; t < 4 + (i * 29) % 120; ++t) prompt.push_back(3 + (i * 97 + t * 13) % 1990);
      j["prompt_tokens"] = prompt;
      if (i % 3 == 1) j.update({{"temperature", 0.9}, {"top_p", 0.9}, {"seed", 500 + i}});
      if (i % 5 == 3) j.update({{"temperature", 1.1}, {"top_k", 30}});  // seeded by --seed
      in << j.dump() << "\n";
    }
  }

  // An output path with no output and no manifest.
  static std::string fresh_output(const std::string& name) {
    const std::string out = tmp_path("faults-" + name + ".jsonl");
    fs::remove(out);
    fs::remove(out + ".manifest.json");
    return out;
  }

  static std::string job(int np, int tp, const std::string& out, const std::string& extra = "") {
    return std::string(kTimeout) + TPINFER_MPIRUN + " -np " + std::to_string(np) + " " +
           TPINFER_BIN + " run --model " + model_ + " --input " + input_ + " --output " + out +
           " --tp " + std::to_string(tp) + " --seed 9 --max-batch 16 --checkpoint-interval 0.05 " +
           extra;
  }

  // An uninterrupted run of this layout, once per layout.
  static const Results& reference(int np, int tp) {
    static std::map<std::pair<int, int>, Results> cache;
    auto it = cache.find({np, tp});
    if (it != cache.end()) return it->second;
    const std::string out = fresh_output("ref-" + std::to_string(np) + "-" + std::to_string(tp));
    auto r = run_shell(job(np, tp, out));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return cache[{np, tp}] = results_by_id(out);
  }

  // Resumes `out` on the same layout and expects the uninterrupted run's results.
  static void resume_and_expect_reference(int np, int tp, const std::string& out) {
    auto r = run_shell(job(np, tp, out, "--resume"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    expect_exact(reference(np, tp), results_by_id(out));  // throws on an id written twice
  }

  static void expect_exact(const Results& want, const Results& got) {
    ASSERT_EQ(want.size(), static_cast<size_t>(kRequests));
    EXPECT_EQ(got.size(), want.size());
    for (const auto& [id, w] : want) {
      auto it = got.find(id);
      ASSERT_NE(it, got.end()) << id << " has no result";
      EXPECT_EQ(it->second, w) << id;
    }
  }

  static std::string model_, input_;
};
inline std::string Faults::model_, Faults::input_;

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A shell snippet, run in the background, that waits until `out` holds
// `lines` lines, sleeps `delay_s`, then runs `action` (a command on $p) on the
// process of world rank `rank` of the job writing `out` (found by its command
// line and Open MPI's environment).
inline std::string on_rank_later(const std::string& out, int lines, double delay_s, int rank,
                                 const std::string& action) {
  return "( for i in $(seq 3000); do [ $(cat " + out + " 2>/dev/null | wc -l) -ge " +
         std::to_string(lines) + " ] && break; sleep 0.01; done; sleep " + std::to_string(delay_s) +
         "; for p in $(pgrep -x tpinfer); do grep -q " + fs::path(out).filename().string() +
         " /proc/$p/cmdline 2>/dev/null && tr '\\0' '\\n' < "
         "/proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=" +
         std::to_string(rank) + " && " + action + "; done ) & ";
}

}  // namespace tpinfer::test
