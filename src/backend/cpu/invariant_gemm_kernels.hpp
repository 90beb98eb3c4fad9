#pragma once
// The two builds of invariant_gemm_kernel.inc, and whether the AVX2 one exists.
#include <cstdint>

namespace tpinfer {

// packed: k * 16 floats of scratch.
void invariant_gemm_generic(const float* x, const float* w, const float* bias, float* out,
                            int64_t n, int64_t k, int64_t m, int64_t j0, int64_t j1, float* packed);
void invariant_gemm_avx2(const float* x, const float* w, const float* bias, float* out, int64_t n,
                         int64_t k, int64_t m, int64_t j0, int64_t j1, float* packed);

}  // namespace tpinfer
