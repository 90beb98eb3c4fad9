#include "backend/cpu/invariant_gemm.hpp"

#include <cstddef>
#include <vector>

#include "backend/cpu/invariant_gemm_kernels.hpp"

namespace tpinfer {

void invariant_gemm(const float* x, const float* w, const float* bias, float* out, int64_t n,
                    int64_t k, int64_t m, int64_t j0, int64_t j1) {
  thread_local std::vector<float> packed;
  packed.resize(static_cast<size_t>(k) * 16);
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return invariant_gemm_avx2(x, w, bias, out, n, k, m, j0, j1, packed.data());
#endif
  invariant_gemm_generic(x, w, bias, out, n, k, m, j0, j1, packed.data());
}

}  // namespace tpinfer
