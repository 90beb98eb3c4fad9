// Seeded random weights made in place (bench --random-weights): the formula of
// random_fill.hpp, evaluated per element, so an 8B model appears in a second
// instead of being generated on the host and copied.
#include <cuda_fp16.h>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "base/random_fill.hpp"

namespace tpinfer::cuda {

namespace {

__device__ float round_to(DType d, float v) {
  switch (d) {
    case DType::bf16:
      return __bfloat162float(__float2bfloat16_rn(v));
    case DType::f16:
      return __half2float(__float2half_rn(v));
    default:
      return v;
  }
}

template <typename T>
__global__ void fill_random_kernel(T* out, int64_t rows, int64_t cols, RandomFill f) {
  const int64_t n = rows * cols;
  for (int64_t k = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; k < n;
       k += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = k / cols, j = k % cols;
    out[k] = from_float<T>(round_to(f.round_to, random_fill_value(f, i, j)));
  }
}

}  // namespace

void launch_fill_random(void* out, DType dtype, int64_t rows, int64_t cols, const RandomFill& f,
                        cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 132 * 32));
  switch (dtype) {
    case DType::f32:
      fill_random_kernel<<<blocks, threads, 0, stream>>>(static_cast<float*>(out), rows, cols, f);
      break;
    case DType::bf16:
      fill_random_kernel<<<blocks, threads, 0, stream>>>(static_cast<bf16*>(out), rows, cols, f);
      break;
    case DType::f16:
      fill_random_kernel<<<blocks, threads, 0, stream>>>(static_cast<__half*>(out), rows, cols, f);
      break;
    case DType::fp8_e4m3:
      throw_cuda_error(static_cast<int>(cudaErrorInvalidValue),
                       "fill_random(float8_e4m3fn: a KV cache type, not a weight type)", __FILE__,
                       __LINE__);
  }
  TPINFER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tpinfer::cuda
