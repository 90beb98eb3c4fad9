// The baseline build of the kernel (SSE2 on x86-64): 8-wide sums are two
// registers, so a call carries 2 rows of x.
#include "backend/cpu/invariant_gemm_kernels.hpp"

#define INVARIANT_GEMM_ENTRY invariant_gemm_generic
#define INVARIANT_GEMM_ROWS 2
#include "backend/cpu/invariant_gemm_kernel.inc"
