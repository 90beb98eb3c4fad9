// Sampler: greedy, temperature, top-k, top-p and the Philox draw, checked against
// hand computations and against a naive full-sort reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "base/philox.hpp"
#include "base/sampler.hpp"

namespace tpinfer {
namespace {

SamplingParams sampled(float temperature, int64_t top_k = 0, float top_p = 1.0f,
                       uint64_t seed = 1234) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

// Frequencies of each token over positions [0, n).
std::vector<double> frequencies(const std::vector<float>& logits, const SamplingParams& p, int n) {
  std::vector<double> f(logits.size(), 0.0);
  for (int pos = 0; pos < n; ++pos) f[sample_token(logits, p, pos).token] += 1.0 / n;
  return f;
}

// The definition, written the slow obvious way: full sort, then top-k, top-p and
// the inverse CDF. Weights use the same float arithmetic as the sampler so the
// comparison can be exact.
int32_t reference_sample(const std::vector<float>& logits, const SamplingParams& p,
                         int64_t position) {
  const int64_t v = static_cast<int64_t>(logits.size());
  std::vector<int32_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  if (p.temperature == 0.0f) return order[0];
  const float mx = logits[order[0]];
  auto w = [&](int32_t t) -> double { return sampling_weight(logits[t], mx, p.temperature); };
  const int64_t k = p.top_k > 0 && p.top_k < v ? p.top_k : v;
  double total = 0.0;
  if (k < v) {
    for (int64_t i = 0; i < k; ++i) total += w(order[i]);
  } else {
    for (int32_t t = 0; t < v; ++t) total += w(t);
  }
  std::vector<double> cum(k);
  for (int64_t i = 0; i < k; ++i) cum[i] = (i ? cum[i - 1] : 0.0) + w(order[i]);
  int64_t keep = k;
  double mass = total;
  if (p.top_p < 1.0f) {
    keep = 1;
    while (keep < k && cum[keep - 1] < static_cast<double>(p.top_p) * total) ++keep;
    mass = cum[keep - 1];
  }
  const double u = philox_uniform(philox4x32(p.seed, 0, static_cast<uint64_t>(position))[0]);
  for (int64_t i = 0; i < keep; ++i)
    if (cum[i] > u * mass) return order[i];
  return order[keep - 1];
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 3.0f, 1.0f, 3.0f};
  EXPECT_EQ(sample_token(logits, SamplingParams{}, 0).token, 3);
  logits[5] = 3.5f;
  EXPECT_EQ(sample_token(logits, SamplingParams{}, 7).token, 5);
  // NaN never wins.
  logits[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(sample_token(logits, SamplingParams{}, 0).token, 5);
}

TEST(Sampler, NoFiniteMaximumThrows) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(sample_token(std::vector<float>{nan, nan}, SamplingParams{}, 0), std::runtime_error);
  EXPECT_THROW(sample_token(std::vector<float>{1.0f, inf}, SamplingParams{}, 0),
               std::runtime_error);
  EXPECT_THROW(sample_token(std::vector<float>{-inf, -inf}, sampled(1.0f), 0), std::runtime_error);
}

TEST(Sampler, LogprobIsLogSoftmaxOfRawLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  // log(e + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2) = 3.40760596444438
  const double log_z = 3.40760596444438;
  SamplingParams greedy;
  greedy.logprobs = true;
  SampledToken t = sample_token(logits, greedy, 0);
  EXPECT_EQ(t.token, 2);
  EXPECT_NEAR(t.logprob, 3.0 - log_z, 1e-6);
  // Temperature and top-k change the draw, not the reported logprob.
  SamplingParams p = sampled(0.25f, 1);
  p.logprobs = true;
  t = sample_token(logits, p, 0);
  EXPECT_EQ(t.token, 2);
  EXPECT_NEAR(t.logprob, 3.0 - log_z, 1e-6);
  p = sampled(5.0f);
  p.logprobs = true;
  std::set<int32_t> seen;
  for (int pos = 0; pos < 50; ++pos) {
    t = sample_token(logits, p, pos);
    seen.insert(t.token);
    EXPECT_NEAR(t.logprob, logits[t.token] - log_z, 1e-6);
  }
  EXPECT_EQ(seen.size(), 3u);
  // A large vocabulary with -inf and NaN entries (both weigh nothing).
  std::vector<float> big(50000, -1.0f);
  big[123] = 2.0f;
  big[7] = -std::numeric_limits<float>::infinity();
  big[8] = std::numeric_limits<float>::quiet_NaN();
  t = sample_token(big, greedy, 0);
  EXPECT_EQ(t.token, 123);
  EXPECT_NEAR(t.logprob, -std::log(1.0 + 49997.0 * std::exp(-3.0)), 1e-5);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  std::vector<float> logits(1000);
  for (int i = 0; i < 1000; ++i) logits[i] = philox_normal2(7, 0, i)[0];
  const int32_t greedy = sample_token(logits, SamplingParams{}, 0).token;
  for (int pos = 0; pos < 100; ++pos)
    EXPECT_EQ(sample_token(logits, sampled(1.5f, 1, 0.9f, pos), pos).token, greedy);
}

TEST(Sampler, DrawIsAPureFunctionOfSeedAndPosition) {
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = 0.1f * static_cast<float>(i % 7);
  std::vector<int32_t> a, b, c;
  for (int pos = 0; pos < 200; ++pos) {
    a.push_back(sample_token(logits, sampled(1.0f, 0, 1.0f, 42), pos).token);
    c.push_back(sample_token(logits, sampled(1.0f, 0, 1.0f, 43), pos).token);
  }
  for (int pos = 199; pos >= 0; --pos)
    b.insert(b.begin(), sample_token(logits, sampled(1.0f, 0, 1.0f, 42), pos).token);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);                                               // another seed draws differently
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 20u);  // and positions do vary
}

TEST(Sampler, InverseCdfUsesPhiloxUniformOfSeedAndPosition) {
  // Two tokens, id 1 more likely: in the sampler's order token 1 comes first, so
  // the draw is token 1 exactly when u * total < p1.
  const std::vector<float> logits = log_probs({0.3, 0.7});
  for (int pos = 0; pos < 500; ++pos) {
    const float u = philox_uniform(philox4x32(99, 0, pos)[0]);
    const int32_t expected = u < 0.7f ? 1 : 0;
    if (std::abs(u - 0.7f) < 1e-5f) continue;  // too close to call in float
    EXPECT_EQ(sample_token(logits, sampled(1.0f, 0, 1.0f, 99), pos).token, expected) << pos;
  }
}

TEST(Sampler, FrequenciesMatchTheDistribution) {
  const int n = 40000;  // binomial sd <= 0.0025: 0.012 is ~5 sd
  const std::vector<double> p = {0.10, 0.50, 0.15, 0.25};
  const std::vector<float> logits = log_probs(p);
  std::vector<double> f = frequencies(logits, sampled(1.0f), n);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f[i], p[i], 0.012) << i;

  // Temperature 2: p^(1/2), renormalised.
  double z = 0.0;
  for (double x : p) z += std::sqrt(x);
  f = frequencies(logits, sampled(2.0f), n);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f[i], std::sqrt(p[i]) / z, 0.012) << i;

  // Top-k 2 keeps ids 1 and 3: 0.5 / 0.75 and 0.25 / 0.75.
  f = frequencies(logits, sampled(1.0f, 2), n);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 2.0 / 3.0, 0.012);
  EXPECT_NEAR(f[3], 1.0 / 3.0, 0.012);
}

TEST(Sampler, TopPExcludesTheTail) {
  const int n = 20000;
  const std::vector<float> logits = log_probs({0.10, 0.50, 0.15, 0.25});
  // 0.5 < 0.7 <= 0.75: the nucleus is {1, 3}.
  std::vector<double> f = frequencies(logits, sampled(1.0f, 0, 0.7f), n);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 2.0 / 3.0, 0.015);
  // 0.75 < 0.8 <= 0.9: {1, 3, 2}; token 0 never.
  f = frequencies(logits, sampled(1.0f, 0, 0.8f), n);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_NEAR(f[2], 0.15 / 0.9, 0.015);
  // A tiny top_p keeps only the best token.
  f = frequencies(logits, sampled(1.0f, 0, 0.01f), 500);
  EXPECT_EQ(f[0] + f[2] + f[3], 0.0);
}

TEST(Sampler, TopPBreaksTiesByLowerId) {
  // Ids 2 and 5 tie at 0.3; the order is 0 (0.4), 2, 5. top_p 0.6 stops at 2.
  const std::vector<float> logits = log_probs({0.4, 1e-9, 0.3, 1e-9, 1e-9, 0.3});
  ASSERT_EQ(logits[2], logits[5]);
  const std::vector<double> f = frequencies(logits, sampled(1.0f, 0, 0.6f), 5000);
  EXPECT_EQ(f[5], 0.0);
  EXPECT_GT(f[2], 0.3);
  EXPECT_GT(f[0], 0.4);
  // The same tie under top-k 2.
  EXPECT_EQ(frequencies(logits, sampled(1.0f, 2), 5000)[5], 0.0);
  // -0 and +0 tie too: the lower id comes first.
  const std::vector<float> zeros = {-1.0f, -0.0f, 0.0f, -1.0f, 0.0f};
  const std::vector<double> fz = frequencies(zeros, sampled(1.0f, 0, 0.01f), 200);
  EXPECT_EQ(fz[0] + fz[2] + fz[3] + fz[4], 0.0);
  EXPECT_EQ(frequencies(zeros, sampled(1.0f, 2), 2000)[4], 0.0);
}

TEST(Sampler, TemperatureToZeroBecomesGreedy) {
  const std::vector<float> logits = {10.0f, 9.999f, 3.0f, 9.99f};
  for (float t : {1e-4f, 1e-20f, 1e-45f}) {
    for (int pos = 0; pos < 200; ++pos) EXPECT_EQ(sample_token(logits, sampled(t), pos).token, 0);
  }
  // At a moderate temperature the near-ties do get drawn.
  const std::vector<double> f = frequencies(logits, sampled(1.0f), 2000);
  EXPECT_GT(f[1], 0.2);
  EXPECT_GT(f[3], 0.2);
}

TEST(Sampler, MatchesFullSortReferenceOnLargeVocab) {
  // Exercises the lazily sorted prefix (it grows from 64 by doubling) against
  // the full sort, on a flat-ish and on a peaked distribution.
  const int v = 5000;
  for (float scale : {0.5f, 4.0f}) {
    std::vector<float> logits(v);
    for (int i = 0; i < v; ++i) logits[i] = scale * philox_normal2(5, 1, i)[0];
    logits[17] = logits[4000];  // a tie
    logits[20] = 0.0f;          // and a -0 / +0 tie
    logits[21] = -0.0f;
    // top_k 50 and 300 take the heap path, 1000 the nth_element one.
    for (const SamplingParams& p :
         {sampled(1.0f), sampled(0.7f, 0, 0.95f), sampled(1.3f, 50), sampled(1.0f, 300, 0.5f),
          sampled(1.0f, 1000, 0.9f), sampled(2.0f, 0, 0.999f), sampled(0.0f)}) {
      for (int pos = 0; pos < 120; ++pos)
        ASSERT_EQ(sample_token(logits, p, pos).token, reference_sample(logits, p, pos))
            << "scale " << scale << " T " << p.temperature << " k " << p.top_k << " p " << p.top_p
            << " pos " << pos;
    }
  }
}

}  // namespace
}  // namespace tpinfer
