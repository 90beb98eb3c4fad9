#include "base/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "base/error.hpp"
#include "base/philox.hpp"
#include "base/sampling_math.hpp"

namespace tpinfer {
namespace {

// The one order every rank and every batching agrees on is (logit descending,
// id ascending), packed into one integer per candidate (sampling_math.hpp), so
// sorting is a plain integer sort, about twice as fast as comparing pairs.
using sampling::Key;
using sampling::key_logit;
using sampling::make_key;
int32_t key_id(Key k) {
  return static_cast<int32_t>(sampling::key_id(k));
}

// Candidates sorted lazily: most of the probability mass of a trained model sits
// in a few tokens, so sorting a growing prefix (nth_element + sort, doubling)
// usually costs O(vocab) where a full sort of 128k tokens costs ~10x more.
struct SortedPrefix {
  std::vector<Key>& c;
  int64_t n;           // candidates considered (the top-k set, or all)
  int64_t sorted = 0;  // c[0, sorted) holds the best `sorted` candidates in order
  float max_logit;
  float temperature;
  std::vector<double> cum;  // cum[i]: weight of c[0..i]

  double weight(float logit) const {
    // The GPU sampler computes the same bits (sampling_math.hpp).
    return sampling::weight(logit, max_logit, temperature);
  }
  void sort_to(int64_t m) {
    m = std::min(m, n);
    if (m <= sorted) return;
    auto first = c.begin() + sorted, mid = c.begin() + m, last = c.begin() + n;
    if (mid < last) std::nth_element(first, mid, last);
    std::sort(first, mid);
    sorted = m;
  }
  // Cumulative weight through candidate i (i < n), extending the sorted prefix.
  double cum_at(int64_t i) {
    while (static_cast<int64_t>(cum.size()) <= i) {
      const int64_t j = static_cast<int64_t>(cum.size());
      if (j >= sorted) sort_to(std::max<int64_t>(64, 2 * sorted));
      cum.push_back((j ? cum.back() : 0.0) + weight(key_logit(c[j])));
    }
    return cum[i];
  }
};

}  // namespace

float sampling_weight(float logit, float max_logit, float temperature) {
  return sampling::weight(logit, max_logit, temperature);
}

SamplingParams sampling_params(const RowSampling& row) {
  SamplingParams p;
  p.temperature = row.temperature;
  p.top_k = row.top_k;
  p.top_p = row.top_p;
  p.seed = row.seed;
  p.logprobs = row.logprobs;
  return p;
}

int32_t greedy_token(std::span<const float> logits) {
  float best = -std::numeric_limits<float>::infinity();
  int32_t token = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] > best) best = logits[i], token = static_cast<int32_t>(i);
  return token;
}

uint64_t completion_seed(uint64_t request_seed, int index) {
  if (index == 0) return request_seed;
  // splitmix64 of the pair: neighbouring seeds and indices give unrelated streams.
  uint64_t z = request_seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

SampledToken sample_token(std::span<const float> logits, const SamplingParams& params,
                          int64_t position) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (vocab == 0) throw InternalError("sample_token: empty logits");

  // NaN compares false, so it never wins and is treated as -inf throughout.
  float max_logit = -std::numeric_limits<float>::infinity();
  int32_t argmax = -1;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > max_logit) max_logit = logits[i], argmax = static_cast<int32_t>(i);
  if (argmax < 0 || !std::isfinite(max_logit))
    throw InternalError(
        "sampler: logits have no finite maximum (NaN or overflow in the "
        "model?)");

  // The normaliser is a pass of vocab exps, as costly as all of greedy decoding
  // besides it: done only for requests that asked for logprobs.
  auto result = [&](int32_t token) {
    SampledToken t{token, 0.0f};
    if (params.logprobs) {
      double sum = 0.0;
      for (int64_t i = 0; i < vocab; ++i)
        if (logits[i] == logits[i]) sum += std::exp(logits[i] - max_logit);
      t.logprob =
          static_cast<float>(static_cast<double>(logits[token]) - max_logit - std::log(sum));
    }
    return t;
  };

  // top_k == 1 is greedy by definition of the order, so it skips the draw.
  if (!(params.temperature > 0.0f) || params.top_k == 1) return result(argmax);

  auto key_of = [&](int64_t i) { return make_key(logits[i], static_cast<uint32_t>(i)); };
  const int64_t k = params.top_k > 0 && params.top_k < vocab ? params.top_k : vocab;
  std::vector<Key> c;
  if (k <= vocab / 16) {
    // Small top-k: one pass keeping the k best in a heap (worst on top); nearly
    // every token loses the one comparison with the heap's top.
    c.reserve(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) c.push_back(key_of(i));
    std::make_heap(c.begin(), c.end());
    float worst = key_logit(c.front());
    for (int64_t i = k; i < vocab; ++i) {
      if (!(logits[i] >= worst)) continue;  // the common case: one float compare
      const Key key = key_of(i);
      if (key < c.front()) {
        std::pop_heap(c.begin(), c.end());
        c.back() = key;
        std::push_heap(c.begin(), c.end());
        worst = key_logit(c.front());
      }
    }
  } else {
    c.resize(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) c[i] = key_of(i);
    // Top-k: the k best go to the front, and only they are candidates from here on.
    if (k < vocab) std::nth_element(c.begin(), c.begin() + k, c.end());
  }
  SortedPrefix p{c, k, 0, max_logit, params.temperature, {}};

  double total = 0.0;
  if (k < vocab) {
    p.sort_to(k);
    total = p.cum_at(k - 1);
  } else {
    // Summed in id order; with no top-p the draw may need only a short prefix.
    for (int64_t i = 0; i < vocab; ++i) total += p.weight(key_logit(c[i]));
  }

  // Nucleus: the shortest prefix whose weight reaches top_p of the total.
  int64_t keep = k;
  double mass = total;
  if (params.top_p < 1.0f) {
    const double threshold = static_cast<double>(params.top_p) * total;
    keep = 1;
    while (keep < k && p.cum_at(keep - 1) < threshold) ++keep;
    mass = p.cum_at(keep - 1);
  }

  // Inverse CDF over the kept candidates in order.
  const uint32_t bits = philox4x32(params.seed, 0, static_cast<uint64_t>(position))[0];
  const double target = static_cast<double>(philox_uniform(bits)) * mass;
  for (int64_t i = 0; i < keep; ++i)
    if (p.cum_at(i) > target) return result(key_id(c[i]));
  // Only reachable through rounding between `total` (summed in id order) and the
  // prefix sums: the last kept candidate that has any weight takes the rest.
  for (int64_t i = keep - 1; i > 0; --i)
    if (p.weight(key_logit(c[i])) > 0.0) return result(key_id(c[i]));
  return result(key_id(c[0]));
}

}  // namespace tpinfer
