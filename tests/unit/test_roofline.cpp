// The offline floor of tpinfer bench (src/cli/roofline.hpp) against sums done
// by hand for the shapes the benchmark runs.
#include <gtest/gtest.h>

#include "cli/roofline.hpp"

namespace tpinfer {
namespace {

// Llama-3-8B in bf16 on one H100 (3,031 GB/s, 796 TFLOP/s), 256 / 8192 a step.
RooflineModel llama3_8b_h100() {
  RooflineModel m;
  m.flops_per_token = 2 * 7.505e9;
  m.flops_per_context = 4.0 * 32 * 32 * 128;  // QK^T and PV, 32 layers x 32 q heads x 128
  m.weight_bytes = 15.01e9;
  m.kv_bytes_per_token = 32 * 2 * 8 * 128 * 2;  // 128 KiB
  m.max_batch = 256;
  m.max_step_tokens = 8192;
  m.peak_flops = 796e12;
  m.hbm_bytes = 3031e9;
  return m;
}

// 256 x 1000/1000: 999 decode tokens a request at contexts 1001..1999, 1000
// steps (the longest request's outputs) of 15.01 GB of weights, and 50 TB of KV.
TEST(Roofline, OfflineLongDecodeIsBoundByWeightsAndKvBytes) {
  const auto m = llama3_8b_h100();
  const std::vector<std::pair<int64_t, int64_t>> reqs(256, {1000, 1000});
  const double decode_contexts = 256 * (999.0 * 1000 + 999.0 * 1000 / 2);
  const double bytes = 1000 * 15.01e9 + decode_contexts * 131072;
  const RooflineFloor f = offline_floor(reqs, m);
  EXPECT_TRUE(f.memory_bound());
  EXPECT_NEAR(f.seconds(), bytes / 3031e9, 1e-9 * f.seconds());
  EXPECT_EQ(f.memory_s, f.seconds());
  // The prompts' FLOPs, which this floor lets hide under the decode's bytes.
  const double flops = 256 * 1999 * m.flops_per_token +
                       m.flops_per_context * 256 * (1000.0 * 1001 / 2 + decode_contexts / 256);
  EXPECT_NEAR(f.compute_s, flops / 796e12, 1e-9 * f.compute_s);
  EXPECT_NEAR(256000 / f.seconds(), 11'900, 50);  // output tokens/s at the floor
}

// 8 x 2048/1: all prefill, two 8192-token steps; the FLOPs bound.
TEST(Roofline, OfflinePrefillIsBoundByFlops) {
  const auto m = llama3_8b_h100();
  const std::vector<std::pair<int64_t, int64_t>> reqs(8, {2048, 1});
  const double flops = 8 * 2048 * m.flops_per_token + m.flops_per_context * 8 * (2048.0 * 2049 / 2);
  const RooflineFloor f = offline_floor(reqs, m);
  EXPECT_FALSE(f.memory_bound());
  EXPECT_NEAR(f.seconds(), flops / 796e12, 1e-9 * f.seconds());
  EXPECT_EQ(f.compute_s, f.seconds());
  EXPECT_LT(f.memory_s, f.compute_s);
}

// The step count is bounded below by the longest request's outputs (one token a
// step per sequence), however large the batch, and by the tokens per step.
TEST(Roofline, StepsAreBoundedByTheLongestRequestAndTheStepBudget) {
  RooflineModel m;
  m.weight_bytes = 1;
  m.max_batch = 256;
  m.max_step_tokens = 100;
  // 10 / 100: 99 decode tokens fit one step of 256, yet they take 100 steps.
  EXPECT_DOUBLE_EQ(offline_floor({{10, 100}}, m).seconds(), 100);
  // 1000 prompt tokens, no outputs beyond the first: 10 steps of 100 tokens.
  EXPECT_DOUBLE_EQ(offline_floor({{1000, 1}}, m).seconds(), 10);
  // No outputs at all counts no decode tokens (and no negative ones).
  EXPECT_DOUBLE_EQ(offline_floor({{50, 0}}, m).seconds(), 1);
}

}  // namespace
}  // namespace tpinfer
