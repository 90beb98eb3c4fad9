// The AVX2 build of the kernel (this file alone gets -mavx2, on x86-64): 6
// rows of x a call, 12 of the 16 ymm registers as sums. Elsewhere it is the
// baseline build again, under this name.
#include "backend/cpu/invariant_gemm_kernels.hpp"

#define INVARIANT_GEMM_ENTRY invariant_gemm_avx2
#ifdef __AVX2__
#define INVARIANT_GEMM_ROWS 6
#else
#define INVARIANT_GEMM_ROWS 2
#endif
#include "backend/cpu/invariant_gemm_kernel.inc"
