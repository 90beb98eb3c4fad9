// The cpu backend's GEMM (src/backend/cpu/invariant_gemm.hpp): a row's result
// is the same bits whatever else shares the call, however the columns are
// split, and in both builds of the kernel (AVX2 and baseline); and it is the
// product, against a double-precision sum.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/invariant_gemm.hpp"
#include "backend/cpu/invariant_gemm_kernels.hpp"

namespace tpinfer {
namespace {

struct Problem {
  int64_t n, k, m;
  std::vector<float> x, w, bias;
};

Problem random_problem(int64_t n, int64_t k, int64_t m, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  Problem p{n, k, m, {}, {}, {}};
  p.x.resize(static_cast<size_t>(n * k));
  p.w.resize(static_cast<size_t>(m * k));
  p.bias.resize(static_cast<size_t>(m));
  for (float& v : p.x) v = d(rng);
  for (float& v : p.w) v = d(rng);
  for (float& v : p.bias) v = d(rng);
  return p;
}

std::vector<float> product(const Problem& p, int64_t rows, int64_t row0, bool bias) {
  std::vector<float> out(static_cast<size_t>(rows * p.m), NAN);
  invariant_gemm(p.x.data() + row0 * p.k, p.w.data(), bias ? p.bias.data() : nullptr, out.data(),
                 rows, p.k, p.m, 0, p.m);
  return out;
}

TEST(InvariantGemm, ARowIsTheSameBitsAloneInAnyBatchAndAnyColumnSplit) {
  for (const auto& [k, m] :
       {std::pair<int64_t, int64_t>{33, 40}, {256, 704}, {704, 256}, {1000, 17}, {0, 5}}) {
    const Problem p = random_problem(70, k, m, static_cast<uint32_t>(k * 1000 + m));
    for (const bool bias : {false, true}) {
      const std::vector<float> all = product(p, p.n, 0, bias);
      for (const int64_t rows : {1, 2, 5, 6, 7, 13, 64}) {
        for (int64_t row0 = 0; row0 + rows <= p.n; row0 += 23) {
          const std::vector<float> part = product(p, rows, row0, bias);
          for (int64_t i = 0; i < rows * m; ++i)
            ASSERT_EQ(part[static_cast<size_t>(i)], all[static_cast<size_t>(row0 * m + i)])
                << "k " << k << " m " << m << " rows " << rows << " from " << row0;
        }
      }
      // Columns in uneven slices, as threads take them.
      std::vector<float> sliced(static_cast<size_t>(p.n * m), NAN);
      for (int64_t j0 = 0; j0 < m;) {
        const int64_t j1 = std::min(m, j0 + 1 + j0 % 19);
        invariant_gemm(p.x.data(), p.w.data(), bias ? p.bias.data() : nullptr, sliced.data(), p.n,
                       k, m, j0, j1);
        j0 = j1;
      }
      EXPECT_EQ(sliced, all) << "k " << k << " m " << m;
    }
  }
}

TEST(InvariantGemm, BothBuildsGiveTheSameBitsAndTheProduct) {
  const Problem p = random_problem(29, 300, 45, 9);
  std::vector<float> generic(29 * 45), avx2(29 * 45), packed(300 * 16);
  invariant_gemm_generic(p.x.data(), p.w.data(), p.bias.data(), generic.data(), 29, 300, 45, 0, 45,
                         packed.data());
  invariant_gemm_avx2(p.x.data(), p.w.data(), p.bias.data(), avx2.data(), 29, 300, 45, 0, 45,
                      packed.data());
  EXPECT_EQ(generic, avx2);
  for (int64_t i = 0; i < 29; ++i)
    for (int64_t j = 0; j < 45; ++j) {
      double want = p.bias[static_cast<size_t>(j)];
      for (int64_t t = 0; t < 300; ++t)
        want += static_cast<double>(p.x[static_cast<size_t>(i * 300 + t)]) *
                p.w[static_cast<size_t>(j * 300 + t)];
      EXPECT_NEAR(generic[static_cast<size_t>(i * 45 + j)], want, 1e-3) << i << ", " << j;
    }
}

}  // namespace
}  // namespace tpinfer
