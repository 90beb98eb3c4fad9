#pragma once
// The sampler's definition in exact arithmetic, for the tests of sampling
// where the logits are: every candidate sorted, weights as the fixed-point
// integers of sampling_math.hpp (from the sampler's own weight bits), every sum
// exact. The cuda kernel must equal it token for token; sample_token, which
// sums doubles, may differ from it only where the draw or the top-p threshold
// lies within sampling_bound(vocab) of a boundary between candidates.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "base/batch.hpp"
#include "base/philox.hpp"
#include "base/sampler.hpp"
#include "base/sampling_math.hpp"

namespace tpinfer::testing_exact {

struct ExactDraw {
  int32_t token = -1;  // -1: the row has no finite maximum
  // How close, as a fraction of the total weight, the real-valued top-p
  // threshold and draw came to the boundaries around the candidates they chose.
  double margin = std::numeric_limits<double>::infinity();
};

// The documented bound (docs/CUDA_BACKEND.md, "Sampling"): the host's double
// sums are off by at most about 2 vocab 2^-53 of the total; 2^-51 covers that,
// the products' roundings and the fixed point's truncation.
inline double sampling_bound(int64_t vocab) {
  return std::ldexp(static_cast<double>(vocab), -51);
}


inline ExactDraw exact_sample(std::span<const float> logits, const RowSampling& q) {
  using sampling::U128;
  const int64_t vocab = static_cast<int64_t>(logits.size());
  std::vector<sampling::Key> keys(logits.size());
  for (int64_t i = 0; i < vocab; ++i)
    keys[i] = sampling::make_key(logits[i], static_cast<uint32_t>(i));
  std::sort(keys.begin(), keys.end());
  const float mx = sampling::key_logit(keys[0]);
  if (!std::isfinite(mx)) return {};
  if (!(q.temperature > 0.0f) || q.top_k == 1)
    return {static_cast<int32_t>(sampling::key_id(keys[0]))};
  const int64_t k = q.top_k > 0 && q.top_k < vocab ? q.top_k : vocab;
  const int H = sampling::fixed_shift(vocab);
  std::vector<U128> cum(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const float w = sampling_weight(sampling::key_logit(keys[i]), mx, q.temperature);
    cum[i] = (i ? cum[i - 1] : 0) + sampling::fixed_value(sampling::to_fixed(w, H));
  }
  const U128 total = cum[k - 1];
  const long double ld_total = static_cast<long double>(total);
  ExactDraw d;
  auto near = [&](U128 boundary, long double x) {
    d.margin =
        std::min<double>(d.margin, std::fabs(static_cast<long double>(boundary) - x) / ld_total);
  };
  int64_t keep = k;
  U128 mass = total;
  if (q.top_p < 1.0f) {
    const U128 threshold = sampling::top_p_threshold(q.top_p, total);
    keep = 1;
    while (keep < k && cum[keep - 1] < threshold) ++keep;
    mass = cum[keep - 1];
    const long double t = static_cast<long double>(q.top_p) * ld_total;
    near(cum[keep - 1], t);
    if (keep >= 2) near(cum[keep - 2], t);
  }
  const uint32_t bits = philox4x32(q.seed, 0, static_cast<uint64_t>(q.position))[0];
  const U128 target = sampling::draw_target(bits, mass);
  int64_t j = 0;
  while (cum[j] <= target) ++j;  // cum[keep - 1] = mass > target
  const long double y =
      static_cast<long double>(philox_uniform(bits)) * static_cast<long double>(mass);
  near(cum[j], y);
  if (j >= 1) near(cum[j - 1], y);
  d.token = static_cast<int32_t>(sampling::key_id(keys[j]));
  return d;
}

}  // namespace tpinfer::testing_exact
