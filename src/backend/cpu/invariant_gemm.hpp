#pragma once
// out[i, j] = x[i, :] . w[j, :] (+ bias[j]) for columns j in [j0, j1), fp32,
// each element summed in one fixed order: 0 + x[i,0] w[j,0], then + x[i,1]
// w[j,1], ... in k order, then + bias[j]. Nothing about the call changes that
// order: not how many rows share it, which rows they are, nor how the columns
// are split among threads. So a row's result is the same bits whatever batch
// it is computed in (OpenBLAS picks kernels by shape: the same row differs in
// the last bits between a call of 1 row and one of 16). Built without
// floating-point contraction, so no compiler or CPU fuses the multiply-adds
// differently in different places.
//
// How: w's columns are taken 16 at a time, packed k-major into a small buffer
// (one read of w per call, as a BLAS packs it), and every row of x passes
// over the packed block: an outer-product kernel whose 16-wide accumulators
// each hold one element's running sum.
#include <cstdint>

namespace tpinfer {

void invariant_gemm(const float* x, const float* w, const float* bias, float* out, int64_t n,
                    int64_t k, int64_t m, int64_t j0, int64_t j1);

}  // namespace tpinfer
