// Start-up arena sizing: the sizes a backend tries when the driver refuses
// free memory x --memory-fraction, and the lines it prints.
#include <gtest/gtest.h>

#include "backend/memory_retry.hpp"

namespace tpinfer {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

TEST(MemoryRetry, ShrinksByAFixedShareInWholePagesAFewTimes) {
  const size_t free_bytes = 80 * kGiB;
  const auto a = arena_attempts(free_bytes, 0.9, 10 * kGiB);
  ASSERT_EQ(a.size(), static_cast<size_t>(kArenaMaxAttempts));
  double share = 0.9;
  for (size_t i = 0; i < a.size(); ++i, share *= kArenaShrink) {
    const auto want = static_cast<size_t>(static_cast<double>(free_bytes) * share);
    EXPECT_EQ(a[i].bytes % (2 * kMiB), 0u) << i;
    EXPECT_LE(a[i].bytes, want) << i;
    EXPECT_GT(a[i].bytes + 2 * kMiB, want) << i;
    EXPECT_NEAR(a[i].fraction, share, 1e-4) << i;
    if (i > 0) {
      EXPECT_LT(a[i].bytes, a[i - 1].bytes);
    }
  }
  EXPECT_GE(a.back().bytes, 10 * kGiB);
}

TEST(MemoryRetry, RetriesStopAtTheFloor) {
  // 72, 61.2, 52.0 GiB; 44.2 would be below the 50 GiB the model needs.
  const auto a = arena_attempts(80 * kGiB, 0.9, 50 * kGiB);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_GE(a.back().bytes, 50 * kGiB);
}

TEST(MemoryRetry, WhatTheUserAskedForIsTriedEvenBelowTheFloor) {
  const auto a = arena_attempts(80 * kGiB, 0.5, 60 * kGiB);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].bytes, 40 * kGiB);
  EXPECT_DOUBLE_EQ(a[0].fraction, 0.5);
}

TEST(MemoryRetry, NothingToTryBelowOnePage) {
  EXPECT_TRUE(arena_attempts(3 * kMiB, 0.5, 0).empty());
  EXPECT_TRUE(arena_attempts(0, 0.9, 0).empty());
  // Small sizes that round to the same pages are not tried twice: 4.5, 3.8,
  // 3.3, 2.8, 2.3 and 2.0 MiB are 4 and 2 MiB.
  const auto a = arena_attempts(5 * kMiB, 0.9, 0);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].bytes, 4 * kMiB);
  EXPECT_EQ(a[1].bytes, 2 * kMiB);
}

TEST(MemoryRetry, TheRetryLineAndTheFinalError) {
  const auto a = arena_attempts(80 * kGiB, 0.9, 50 * kGiB);
  EXPECT_EQ(arena_retry_line(2, 1, a[0], a[1], 80 * kGiB),
            "tpinfer: rank 2: GPU 1: cannot allocate 72.0 GiB (0.900 of 80.0 GiB free); retrying "
            "with 61.2 GiB (0.765)");
  const std::string e = arena_failure_message(1, a, 80 * kGiB, 50 * kGiB);
  EXPECT_EQ(
      e.rfind("GPU 1: cannot allocate the memory arena: tried 72.0 GiB, 61.2 GiB, 52.0 GiB of "
              "80.0 GiB reported free; the model needs at least 50.0 GiB",
              0),
      0u)
      << e;
}

}  // namespace
}  // namespace tpinfer
