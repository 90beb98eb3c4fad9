// Greedy decoding's argmax where the logits are: one block per row, so only
// (value, index) pairs leave the GPU instead of vocab-wide rows.
#include <cfloat>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {

namespace {

// Larger value wins; equal values go to the lower index (the sampler's rule).
__device__ inline void better(float& v, int64_t& i, float ov, int64_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__device__ inline float to_float(bf16 x) {
  return __bfloat162float(x);
}
__device__ inline float to_float(float x) {
  return x;
}

template <typename T>
__global__ void argmax_rows_kernel(const T* logits, int64_t cols, int64_t valid_cols,
                                   int64_t col_offset, float* out) {
  wait_for_prior_grids();
  const T* row = logits + blockIdx.x * cols;
  float v = -FLT_MAX * 2;  // -inf: NaN and -inf never replace it, as on the host
  int64_t i = valid_cols;  // sentinel: "no finite value yet"
  for (int64_t j = threadIdx.x; j < valid_cols; j += blockDim.x) {
    const float x = to_float(row[j]);
    if (x > v) {  // strict: within a thread, columns rise, so ties keep the lowest
      v = x;
      i = j;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, v, off);
    const int64_t oi = __shfl_down_sync(0xffffffffu, i, off);
    better(v, i, ov, oi);
  }
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) / 32;
    v = lane < warps ? sv[lane] : -FLT_MAX * 2;
    i = lane < warps ? si[lane] : valid_cols;
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, v, off);
      const int64_t oi = __shfl_down_sync(0xffffffffu, i, off);
      better(v, i, ov, oi);
    }
    if (lane == 0) {
      out[2 * blockIdx.x] = v;
      out[2 * blockIdx.x + 1] = static_cast<float>(col_offset + (i == valid_cols ? 0 : i));
    }
  }
}

}  // namespace

void launch_argmax_rows(const void* logits, bool bf16_logits, int64_t n, int64_t cols,
                        int64_t valid_cols, int64_t col_offset, float* out, cudaStream_t stream) {
  if (n == 0) return;
  if (bf16_logits)
    launch_kernel(argmax_rows_kernel<bf16>, static_cast<unsigned>(n), 1024, 0, stream,
                  static_cast<const bf16*>(logits), cols, valid_cols, col_offset, out);
  else
    launch_kernel(argmax_rows_kernel<float>, static_cast<unsigned>(n), 1024, 0, stream,
                  static_cast<const float*>(logits), cols, valid_cols, col_offset, out);
}

}  // namespace tpinfer::cuda
