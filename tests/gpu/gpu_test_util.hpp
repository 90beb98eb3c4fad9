#pragma once
// Helpers of the GPU tests: random inputs that are exact in bf16 (so the cpu
// and cuda backends see identical values and only the arithmetic differs),
// tensors on a backend, paged batches with shuffled block tables, and the
// comparison against the cpu backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../paged_batch.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "base/batch.hpp"
#include "base/half.hpp"
#include "dist/mpi_collectives.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::gputest {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    if (::tpinfer::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

inline float round_bf16(float v) {
  return bf16_to_float(float_to_bf16(v));
}

inline std::vector<float> random_bf16(std::mt19937_64& rng, size_t n, float lo = -1.0f,
                                      float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = round_bf16(d(rng));
  return v;
}

inline Tensor put(Backend& b, const std::vector<int64_t>& shape, const std::vector<float>& host,
                  DType dtype) {
  Tensor t = b.alloc(shape, dtype);
  EXPECT_EQ(static_cast<size_t>(t.numel()), host.size());
  b.upload(t, host.data());
  return t;
}

inline Tensor poisoned(Backend& b, const std::vector<int64_t>& shape, DType dtype) {
  Tensor t = b.alloc(shape, dtype);
  std::vector<float> nan(static_cast<size_t>(t.numel()), kNaN);
  b.upload(t, nan.data());
  return t;
}

inline std::vector<float> get(Backend& b, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  b.download(t, v.data());
  return v;
}

inline double rms(const std::vector<float>& v) {
  double ss = 0.0;
  size_t n = 0;
  for (float x : v)
    if (!std::isnan(x)) ss += static_cast<double>(x) * x, ++n;
  return n ? std::sqrt(ss / static_cast<double>(n)) : 0.0;
}

// |got - want| <= rtol * (|want| + rms(want)) element by element: relative to
// the element where it is large, to the output's scale where it is small. NaN
// in `got` fails, except where `want` is NaN too and nan_ok (untouched poison).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rtol,
                         const std::string& what, bool nan_ok = false) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = rms(want);
  size_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) && nan_ok) {
      if (!std::isnan(got[i])) {
        if (bad < 5) ADD_FAILURE() << what << ": element " << i << " written (" << got[i] << ")";
        ++bad;
      }
      continue;
    }
    const double err = std::abs(static_cast<double>(got[i]) - want[i]);
    const double tol = rtol * (std::abs(static_cast<double>(want[i])) + scale);
    if (!(err <= tol)) {
      if (bad < 5)
        ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << want[i]
                      << " (tolerance " << tol << ")";
      ++bad;
    }
    if (scale > 0) worst = std::max(worst, err / scale);
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements off; worst error / rms = " << worst;
}

using test::make_batch;
using test::make_paging;
using test::Paging;
using test::SeqSpec;

// Llama 3's frequency-dependent RoPE scaling at a small original context, so
// that all three bands occur at small head dims.
inline std::vector<float> llama3_inv_freq(int head_dim) {
  const double factor = 8.0, low = 1.0, high = 4.0, orig = 64.0, pi = std::acos(-1.0);
  std::vector<float> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    double x = 1.0 / std::pow(500000.0, 2.0 * i / head_dim);
    const double wavelen = 2.0 * pi / x;
    if (wavelen > orig / low) {
      x /= factor;
    } else if (wavelen >= orig / high) {
      const double smooth = (orig / wavelen - low) / (high - low);
      x = (1.0 - smooth) * x / factor + smooth * x;
    }
    f[i] = static_cast<float>(x);
  }
  return f;
}

// The two backends of a comparison: the fp32 cpu reference and the cuda backend.
struct BackendPair {
  std::unique_ptr<Backend> cpu, gpu;
  explicit BackendPair(int gemv_max_rows = CudaBackendOptions{}.gemv_max_rows,
                       bool gemm_tune = CudaBackendOptions{}.gemm_tune,
                       CudaBackendOptions::PrefillAttention prefill_attention =
                           CudaBackendOptions{}.prefill_attention) {
    cpu = make_cpu_backend(mpi_collectives(MPI_COMM_SELF), 0);
    CudaBackendOptions o;
    o.memory_fraction = 0.1;
    o.gemv_max_rows = gemv_max_rows;
    o.gemm_tune = gemm_tune;
    o.prefill_attention = prefill_attention;
    gpu = make_cuda_backend(MPI_COMM_SELF, o);
  }
};

}  // namespace tpinfer::gputest
