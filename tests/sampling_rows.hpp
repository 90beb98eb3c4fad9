#pragma once
// Random rows of logits with sampling settings, for the tests of sampling where
// the logits are: every kind of row the sampler distinguishes (flat, peaked,
// many exact ties, NaN and -inf entries, a language model's long tail) under
// every combination of temperature, top-k and top-p, each alone and combined.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "base/batch.hpp"

namespace tpinfer::testing_exact {

struct Row {
  std::vector<float> logits;
  RowSampling q;
};

inline std::vector<Row> random_rows(int64_t vocab, int count, uint64_t seed) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // 0 is greedy; 1e-30 and 80 are the extremes (one token; nearly uniform).
  const float temps[] = {0.0f, 1e-30f, 0.05f, 0.7f, 1.0f, 1.5f, 80.0f};
  const int64_t ks[] = {0, 1, 2, 40, vocab - 1, vocab + 5};
  const float ps[] = {1.0f, 0.9f, 0.5f, 1e-6f, 0.999f};
  constexpr int kCombos = 7 * 6 * 5;
  std::vector<Row> rows(static_cast<size_t>(count));
  for (int r = 0; r < count; ++r) {
    Row& row = rows[r];
    row.logits.resize(static_cast<size_t>(vocab));
    const int kind = r % 5;
    for (int64_t i = 0; i < vocab; ++i) {
      float x = normal(rng);
      if (kind == 1) x *= 4.0f;                        // peaked
      if (kind == 2) x = std::round(x * 4.0f) / 4.0f;  // exact ties
      if (kind == 3 && rng() % 50 == 0) x = rng() % 2 ? kNaN : -kInf;
      if (kind == 4) x = 20.0f - 3.0f * std::log1p(static_cast<float>(i % 997));  // long tail
      row.logits[i] = x;
    }
    if (kind == 1)
      for (int s = 0; s < 5; ++s) row.logits[rng() % vocab] += 12.0f;
    // Combinations in a stride coprime to their number: each kind meets each.
    const int c = (r * 37) % kCombos;
    RowSampling& q = row.q;
    q.temperature = temps[c % 7];
    q.top_k = ks[(c / 7) % 6];
    q.top_p = ps[c / 42];
    q.seed = rng();
    q.position = static_cast<int64_t>(rng() % 100000);
    q.logprobs = rng() % 2 == 0;
  }
  return rows;
}

}  // namespace tpinfer::testing_exact
