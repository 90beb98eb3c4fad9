// Sampling where the logits are (Backend::sample_rows): the shared arithmetic
// of sampling_math.hpp, the cpu backend's sample_rows against sample_token,
// the exact-arithmetic sampler (tests/exact_sampler.hpp, the GPU kernel's
// oracle) against sample_token within the documented bound, and the engine
// taking forward's drawn tokens instead of sampling whole rows itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "../exact_sampler.hpp"
#include "../fake_step.hpp"
#include "../sampling_rows.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/collectives.hpp"
#include "base/error.hpp"
#include "base/sampler.hpp"
#include "base/sampling_math.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

using sampling::U128;
using testing_exact::random_rows;
using testing_exact::Row;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class SampleRows : public ::testing::Test {};

// ---------------------------------------------------------------- arithmetic

TEST(SamplingMath, WeightIsExpWithinAFewUlpsAndOneAtTheMaximum) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> d(-86.0f, 0.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = i < 1000 ? -static_cast<float>(i) * 1e-4f : d(rng);
    const double want = std::exp(static_cast<double>(x));
    const double got = sampling_weight(x, 0.0f, 1.0f);
    worst = std::max(worst, std::fabs(got - want) / want);
  }
  EXPECT_LT(worst, 4.0 * std::ldexp(1.0, -24)) << "relative error";
  for (float m : {0.0f, -3.5f, 17.25f, 1e30f})
    for (float t : {1e-30f, 0.01f, 1.0f, 1e30f}) EXPECT_EQ(sampling_weight(m, m, t), 1.0f);
  EXPECT_EQ(sampling_weight(-86.01f, 0.0f, 1.0f), 0.0f);
  EXPECT_GT(sampling_weight(-86.0f, 0.0f, 1.0f), 0.0f);
  EXPECT_EQ(sampling_weight(-kInf, 0.0f, 1.0f), 0.0f);
  EXPECT_EQ(sampling_weight(1.0f, 2.0f, 1e-40f), 0.0f);  // T -> 0: only the best weighs
}

TEST(SamplingMath, KeysOrderLogitsDescendingThenIdsAscending) {
  using sampling::make_key;
  EXPECT_LT(make_key(2.0f, 9), make_key(1.0f, 0));
  EXPECT_LT(make_key(1.0f, 3), make_key(1.0f, 4));
  EXPECT_LT(make_key(-1.0f, 0), make_key(-2.0f, 0));
  EXPECT_LT(make_key(-0.0f, 1), make_key(0.0f, 2));  // -0 ties with +0
  EXPECT_EQ(make_key(kNaN, 5), make_key(-kInf, 5));
  EXPECT_EQ(sampling::key_logit(make_key(-0.0f, 1)), 0.0f);
  EXPECT_FALSE(std::signbit(sampling::key_logit(make_key(-0.0f, 1))));
  EXPECT_EQ(sampling::key_logit(make_key(-3.25f, 7)), -3.25f);
  EXPECT_EQ(sampling::key_id(make_key(-3.25f, 7)), 7u);
}

TEST(SamplingMath, FixedPointIsTheExactFloorAndSumsCannotOverflow) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> expo(-140.0f, 0.0f);
  for (int64_t vocab :
       {int64_t{1}, int64_t{1000}, int64_t{32000}, int64_t{128256}, (int64_t{1} << 24) - 1}) {
    const int H = sampling::fixed_shift(vocab);
    // vocab weights of 1 (the most there can be) fit both uint64 parts.
    const sampling::Fixed one = sampling::to_fixed(1.0f, H);
    EXPECT_EQ(one.hi, uint64_t{1} << H);
    EXPECT_EQ(one.lo, 0u);
    EXPECT_LE(static_cast<U128>(vocab) * one.hi, ~uint64_t{0}) << vocab;
    for (int i = 0; i < 20000; ++i) {
      const float w = std::min(1.0f, std::exp2(expo(rng)));
      const U128 got = sampling::fixed_value(sampling::to_fixed(w, H));
      const U128 want =
          static_cast<U128>(std::floor(std::ldexp(static_cast<long double>(w), H + 32)));
      ASSERT_TRUE(got == want) << "w " << w << " vocab " << vocab;
    }
    EXPECT_TRUE(sampling::fixed_value(sampling::to_fixed(0.0f, H)) == 0);
    // Below the resolution: nothing.
    EXPECT_TRUE(sampling::fixed_value(sampling::to_fixed(std::ldexp(1.0f, -H - 33), H)) == 0);
  }
}

TEST(SamplingMath, ThresholdsAreExactCeilingAndFloor) {
  std::mt19937_64 rng(3);
  auto random_u128 = [&](int bits) {
    U128 v = (static_cast<U128>(rng()) << 64) | rng();
    return (v >> (128 - bits)) | 1;
  };
  std::uniform_real_distribution<float> p(0.02f, 1.0f);
  for (int i = 0; i < 100000; ++i) {
    const U128 total = random_u128(1 + static_cast<int>(rng() % 90));
    const float top_p = std::min(p(rng), 0.99999994f);
    const U128 t = sampling::top_p_threshold(top_p, total);
    // top_p = m / 2^s with s <= 30 here: t is the least integer >= m total / 2^s.
    int e = 0;
    const double frac = std::frexp(static_cast<double>(top_p), &e);
    const uint32_t m = static_cast<uint32_t>(std::ldexp(frac, 24));
    const int s = 24 - e;
    ASSERT_TRUE((t << s) >= total * m && ((t - 1) << s) < total * m) << i;

    const uint32_t bits = static_cast<uint32_t>(rng());
    const U128 mass = random_u128(1 + static_cast<int>(rng() % 96));
    const U128 y = sampling::draw_target(bits, mass);
    const U128 prod = mass * (bits >> 8);
    ASSERT_TRUE((y << 24) <= prod && ((y + 1) << 24) > prod) << i;
    ASSERT_TRUE(y < mass);
  }
  EXPECT_TRUE(sampling::top_p_threshold(0.0f, 100) == 0);
  EXPECT_TRUE(sampling::top_p_threshold(-1.0f, 100) == 0);
  EXPECT_TRUE(sampling::top_p_threshold(1e-45f, 100) == 1);  // subnormal: still reaches the best
  EXPECT_TRUE(sampling::top_p_threshold(0.5f, 101) == 51);
}

// ---------------------------------------------------------------- cpu backend

TEST_F(SampleRows, CpuBackendIsSampleTokenRowByRowInBothLayouts) {
  auto backend = make_cpu_backend(single_process_collectives(), 2);
  for (int64_t parts : {1, 3}) {
    const int64_t vocab = 1000, n = 60;
    const int64_t cols = parts == 1 ? vocab : (vocab + parts - 1) / parts + 2;  // padded parts
    std::vector<Row> rows = random_rows(vocab, static_cast<int>(n), 10 + parts);
    // Rows with no finite maximum: sample_token throws, sample_rows says -1.
    rows[7].logits.assign(vocab, kNaN);
    rows[8].logits[500] = kInf;
    rows[9].logits.assign(vocab, -kInf);
    // Column j of row r sits in part j / cols; the padding holds huge values
    // that must not count.
    std::vector<float> host(static_cast<size_t>(parts * n * cols), 1e30f);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < vocab; ++j)
        host[((j / cols) * n + r) * cols + j % cols] = rows[r].logits[j];
    Tensor logits = backend->alloc(
        parts == 1 ? std::vector<int64_t>{n, cols} : std::vector<int64_t>{parts, n, cols},
        DType::f32);
    backend->upload(logits, host.data());
    // Every row but the last, in reverse order: rows[i] need not be i.
    std::vector<int32_t> which;
    std::vector<RowSampling> params;
    for (int64_t r = n - 2; r >= 0; --r) {
      which.push_back(static_cast<int32_t>(r));
      params.push_back(rows[r].q);
    }
    Tensor out = backend->alloc({static_cast<int64_t>(which.size()), 2}, DType::f32);
    backend->sample_rows(logits, vocab, which, params, out);
    std::vector<float> got(static_cast<size_t>(out.numel()));
    backend->download(out, got.data());
    for (size_t i = 0; i < which.size(); ++i) {
      const Row& row = rows[which[i]];
      if (which[i] >= 7 && which[i] <= 9) {
        EXPECT_EQ(got[2 * i], -1.0f) << which[i];
        continue;
      }
      const SampledToken want = sample_token(row.logits, sampling_params(row.q), row.q.position);
      EXPECT_EQ(got[2 * i], static_cast<float>(want.token))
          << "parts " << parts << " row " << which[i];
      EXPECT_EQ(got[2 * i + 1], want.logprob) << "parts " << parts << " row " << which[i];
    }
  }
}

TEST_F(SampleRows, CpuBackendRefusesMalformedCalls) {
  auto backend = make_cpu_backend(single_process_collectives(), 1);
  Tensor logits = backend->alloc({4, 10}, DType::f32);
  Tensor out = backend->alloc({2, 2}, DType::f32);
  const std::vector<RowSampling> two(2);
  EXPECT_THROW(backend->sample_rows(logits, 10, {0}, two, out), Error);     // rows != params
  EXPECT_THROW(backend->sample_rows(logits, 10, {0, 4}, two, out), Error);  // row outside
  EXPECT_THROW(backend->sample_rows(logits, 11, {0, 1}, two, out), Error);  // vocab > cols
  Tensor small = backend->alloc({1, 2}, DType::f32);
  EXPECT_THROW(backend->sample_rows(logits, 10, {0, 1}, two, small), Error);  // out too small
  backend->sample_rows(logits, 10, {}, {}, out);                              // nothing to do
}

// ---------------------------------------------------------------- the bound

TEST(ExactSampler, SampleTokenAgreesWithItExceptWithinTheBound) {
  // The claim the GPU kernel rests on: its exact sums choose what the host's
  // double sums choose unless a decision lies within sampling_bound of a
  // boundary. Here on the host, against the exact-arithmetic oracle.
  int compared = 0, sampled = 0, mismatches = 0;
  for (int64_t vocab : {int64_t{1000}, int64_t{32000}}) {
    const std::vector<Row> rows = random_rows(vocab, vocab == 1000 ? 3000 : 400, 77 + vocab);
    for (const Row& row : rows) {
      const SampledToken host = sample_token(row.logits, sampling_params(row.q), row.q.position);
      const testing_exact::ExactDraw exact = testing_exact::exact_sample(row.logits, row.q);
      ++compared;
      sampled += row.q.temperature > 0 && row.q.top_k != 1;
      if (host.token != exact.token) {
        ++mismatches;
        EXPECT_LE(exact.margin, testing_exact::sampling_bound(vocab))
            << "vocab " << vocab << ": host " << host.token << ", exact " << exact.token;
      }
    }
  }
  EXPECT_GT(sampled, compared / 2);
  std::printf("exact sampler: %d rows (%d sampled), %d within the bound of a boundary\n", compared,
              sampled, mismatches);
}

// ---------------------------------------------------------------- engine

TEST_F(SampleRows, EngineTakesForwardsDrawsAndTheyEqualHostSampling) {
  const ModelConfig c = testing::tiny_llama_config(211);
  auto run = [&](bool drawn_by_forward, int* drawn_steps) {
    auto backend = make_cpu_backend(single_process_collectives(), 1);
    Model m = load_model(*backend, c, 0, 1,
                         [&](const TensorShard& s) { return random_tensor_values(c, s, 5); });
    allocate_kv_cache(m, *backend, 64, 4);
    allocate_workspace(m, *backend, 64, 8);
    const EngineOptions eo = testing::engine_options_for(c, 4, 64, 8, 64);
    // Drawn where the logits are (the job's step), or from whole rows sampled
    // on the host.
    const StepFn host_sampled = testing::step_from_logits(
        [&](const BatchLayout& b, std::vector<float>& l) { forward(m, *backend, b, l); });
    Engine engine(eo, [&](const BatchLayout& b, StepTokens& out) {
      if (!drawn_by_forward) return host_sampled(b, out);
      step_tokens(m, *backend, b, out);
      for (size_t j = 0; j < b.logit_rows.size(); ++j)
        if (b.needs_full(j)) {
          ++*drawn_steps;
          break;
        }
    });
    for (int i = 0; i < 6; ++i) {
      Request r;
      r.id_json = std::to_string(i);
      for (int t = 0; t < 2 + 5 * i; ++t) r.prompt.push_back((i * 37 + t * 11) % 200 + 3);
      r.sampling.max_new_tokens = 15;
      r.sampling.temperature = i == 0 ? 0.0f : 0.4f * static_cast<float>(i);
      r.sampling.top_k = i == 3 ? 20 : 0;
      r.sampling.top_p = i == 4 ? 0.8f : 1.0f;
      r.sampling.seed = 1000 + i;
      r.sampling.logprobs = i % 2 == 0;
      engine.add(r);
    }
    std::map<std::string, Result> out;
    while (engine.num_unfinished() > 0)
      for (Result& r : engine.step()) out.emplace(r.id_json, std::move(r));
    return out;
  };
  int drawn_steps = 0, unused = 0;
  const auto drawn = run(true, &drawn_steps);
  const auto host = run(false, &unused);
  EXPECT_GT(drawn_steps, 5);
  ASSERT_EQ(drawn.size(), 6u);
  for (const auto& [id, r] : host) {
    const Result& d = drawn.at(id);
    EXPECT_EQ(d.choices.at(0).tokens, r.choices.at(0).tokens) << "request " << id;
    EXPECT_EQ(d.choices.at(0).logprobs, r.choices.at(0).logprobs) << "request " << id;
    EXPECT_EQ(r.choices.at(0).tokens.size(), 15u);
  }
}

}  // namespace
}  // namespace tpinfer
