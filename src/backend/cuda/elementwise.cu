// Row-wise and elementwise kernels: embed, rmsnorm, add_rmsnorm, silu_mul,
// gather_rows, fill_rows. One pass over memory each; 16-byte bf16x8 accesses
// when the row length is a multiple of 8 (every real model), scalar otherwise.
// Arithmetic in fp32, one rounding to bf16 per stored value.
#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {

// Threads for a row kernel: one 8-wide vector (or one element) per thread up
// to 1024, in whole warps.
int row_threads(int64_t work) {
  const int64_t t = std::clamp<int64_t>((work + 31) / 32 * 32, 32, 1024);
  return static_cast<int>(t);
}

unsigned grid_for(int64_t work, int threads) {
  const int64_t blocks = std::clamp<int64_t>((work + threads - 1) / threads, 1, 1 << 20);
  return static_cast<unsigned>(blocks);
}

template <bool kVec>
__global__ void embed_kernel(const bf16* table, int64_t rows, int64_t h, int64_t vocab_offset,
                             const int32_t* token_ids, bf16* out) {
  wait_for_prior_grids();
  const int64_t t = blockIdx.x;
  const int64_t r = static_cast<int64_t>(token_ids[t]) - vocab_offset;
  const bool here = r >= 0 && r < rows;  // else another rank's shard: the all-reduce adds it
  const bf16* src = table + (here ? r : 0) * h;
  bf16* dst = out + t * h;
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < h; i += blockDim.x * 8) {
      Bf16x8 v{};
      if (here) v = *reinterpret_cast<const Bf16x8*>(src + i);
      *reinterpret_cast<Bf16x8*>(dst + i) = v;
    }
  } else {
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
      dst[i] = here ? src[i] : __float2bfloat16(0.0f);
  }
}

// x and out may alias: every thread reads and writes the same elements in
// both passes, and the block-wide sum separates the passes.
template <bool kVec>
__global__ void rmsnorm_kernel(const bf16* x, const bf16* __restrict__ w, float eps, int64_t h,
                               bf16* out) {
  wait_for_prior_grids();
  __shared__ float scratch[32];
  const bf16* xr = x + blockIdx.x * h;
  bf16* orow = out + blockIdx.x * h;
  float ss = 0.0f;
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < h; i += blockDim.x * 8) {
      float f[8];
      load8(xr + i, f);
#pragma unroll
      for (int k = 0; k < 8; ++k) ss += f[k] * f[k];
    }
  } else {
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
      const float v = __bfloat162float(xr[i]);
      ss += v * v;
    }
  }
  // eps inside the square root, as Hugging Face's LlamaRMSNorm; a correctly
  // rounded sqrt and division rather than rsqrtf's approximation.
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / static_cast<float>(h) + eps);
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < h; i += blockDim.x * 8) {
      float f[8], g[8];
      load8(xr + i, f);
      load8(w + i, g);
#pragma unroll
      for (int k = 0; k < 8; ++k) f[k] = (f[k] * inv) * g[k];
      store8(orow + i, f);
    }
  } else {
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
      orow[i] = __float2bfloat16((__bfloat162float(xr[i]) * inv) * __bfloat162float(w[i]));
  }
}

// The residual stream is stored in bf16 (as in Hugging Face's bf16 models): the
// sum is formed in fp32, rounded once, and the statistics use the rounded
// value, which is what the next layer reads. out may alias x (not residual).
template <bool kVec>
__global__ void add_rmsnorm_kernel(bf16* residual, const bf16* x, const bf16* __restrict__ w,
                                   float eps, int64_t h, bf16* out) {
  wait_for_prior_grids();
  __shared__ float scratch[32];
  bf16* rr = residual + blockIdx.x * h;
  const bf16* xr = x + blockIdx.x * h;
  bf16* orow = out + blockIdx.x * h;
  float ss = 0.0f;
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < h; i += blockDim.x * 8) {
      float a[8], b[8];
      load8(rr + i, a);
      load8(xr + i, b);
      Bf16x8 s;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        s.h[k] = __floats2bfloat162_rn(a[2 * k] + b[2 * k], a[2 * k + 1] + b[2 * k + 1]);
        const float2 r = __bfloat1622float2(s.h[k]);
        ss += r.x * r.x + r.y * r.y;
      }
      *reinterpret_cast<Bf16x8*>(rr + i) = s;
    }
  } else {
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
      const bf16 s = __float2bfloat16(__bfloat162float(rr[i]) + __bfloat162float(xr[i]));
      rr[i] = s;
      const float r = __bfloat162float(s);
      ss += r * r;
    }
  }
  const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / static_cast<float>(h) + eps);
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < h; i += blockDim.x * 8) {
      float f[8], g[8];
      load8(rr + i, f);
      load8(w + i, g);
#pragma unroll
      for (int k = 0; k < 8; ++k) f[k] = (f[k] * inv) * g[k];
      store8(orow + i, f);
    }
  } else {
    for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
      orow[i] = __float2bfloat16((__bfloat162float(rr[i]) * inv) * __bfloat162float(w[i]));
  }
}

// gate / (1 + e^-gate) * up: for gate << 0, e^-gate overflows to inf and the
// quotient is a correct -0 rather than NaN (precise expf: no fast math here).
__device__ __forceinline__ float silu_times(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

template <bool kVec>
__global__ void silu_mul_kernel(const bf16* __restrict__ gate_up, int64_t n, int64_t inter,
                                bf16* __restrict__ out) {
  wait_for_prior_grids();
  constexpr int kW = kVec ? 8 : 1;
  const int64_t per_row = inter / kW;
  const int64_t total = n * per_row;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / per_row, j = (idx % per_row) * kW;
    const bf16* g = gate_up + t * 2 * inter + j;
    if constexpr (kVec) {
      float gf[8], uf[8];
      load8(g, gf);
      load8(g + inter, uf);
#pragma unroll
      for (int k = 0; k < 8; ++k) gf[k] = silu_times(gf[k], uf[k]);
      store8(out + t * inter + j, gf);
    } else {
      out[t * inter + j] =
          __float2bfloat16(silu_times(__bfloat162float(g[0]), __bfloat162float(g[inter])));
    }
  }
}

template <bool kVec>
__global__ void gather_rows_kernel(const bf16* __restrict__ x, int64_t cols,
                                   const int32_t* __restrict__ rows, bf16* __restrict__ out) {
  wait_for_prior_grids();
  const bf16* src = x + static_cast<int64_t>(rows[blockIdx.x]) * cols;
  bf16* dst = out + blockIdx.x * cols;
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 8; i < cols; i += blockDim.x * 8)
      *reinterpret_cast<Bf16x8*>(dst + i) = *reinterpret_cast<const Bf16x8*>(src + i);
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = src[i];
  }
}

__global__ void fill_rows_kernel(const bf16* bias, int64_t n, int64_t m, bf16* out) {
  wait_for_prior_grids();
  const int64_t total = n * m;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[idx] = bias ? bias[idx % m] : __float2bfloat16(0.0f);
}

__global__ void sum_parts_kernel(const bf16* in, int64_t parts, int64_t count, bf16* out) {
  wait_for_prior_grids();
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int64_t r = 0; r < parts; ++r) acc = __fadd_rn(acc, __bfloat162float(in[r * count + idx]));
    out[idx] = __float2bfloat16(acc);
  }
}

bool vec_ok(int64_t len, const void* a, const void* b = nullptr, const void* c = nullptr) {
  auto al = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  return len % 8 == 0 && al(a) && al(b) && al(c);
}

}  // namespace

void launch_embed(const bf16* table, int64_t rows, int64_t h, int64_t vocab_offset,
                  const int32_t* token_ids, int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0 || h == 0) return;
  const bool vec = vec_ok(h, table, out);
  const int threads = row_threads(vec ? h / 8 : h);
  if (vec)
    launch_kernel(embed_kernel<true>, n, threads, 0, stream, table, rows, h, vocab_offset,
                  token_ids, out);
  else
    launch_kernel(embed_kernel<false>, n, threads, 0, stream, table, rows, h, vocab_offset,
                  token_ids, out);
}

void launch_rmsnorm(const bf16* x, const bf16* w, float eps, int64_t n, int64_t h, bf16* out,
                    cudaStream_t stream) {
  if (n == 0 || h == 0) return;
  const bool vec = vec_ok(h, x, w, out);
  const int threads = row_threads(vec ? h / 8 : h);
  if (vec)
    launch_kernel(rmsnorm_kernel<true>, n, threads, 0, stream, x, w, eps, h, out);
  else
    launch_kernel(rmsnorm_kernel<false>, n, threads, 0, stream, x, w, eps, h, out);
}

void launch_add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, float eps, int64_t n,
                        int64_t h, bf16* out, cudaStream_t stream) {
  if (n == 0 || h == 0) return;
  const bool vec = vec_ok(h, residual, x, w) && vec_ok(h, out);
  const int threads = row_threads(vec ? h / 8 : h);
  if (vec)
    launch_kernel(add_rmsnorm_kernel<true>, n, threads, 0, stream, residual, x, w, eps, h, out);
  else
    launch_kernel(add_rmsnorm_kernel<false>, n, threads, 0, stream, residual, x, w, eps, h, out);
}

void launch_silu_mul(const bf16* gate_up, int64_t n, int64_t i, bf16* out, cudaStream_t stream) {
  if (n == 0 || i == 0) return;
  const bool vec = vec_ok(i, gate_up, out);
  const int threads = 256;
  const int64_t work = n * (vec ? i / 8 : i);
  if (vec)
    launch_kernel(silu_mul_kernel<true>, grid_for(work, threads), threads, 0, stream, gate_up, n, i,
                  out);
  else
    launch_kernel(silu_mul_kernel<false>, grid_for(work, threads), threads, 0, stream, gate_up, n,
                  i, out);
}

void launch_gather_rows(const bf16* x, int64_t cols, const int32_t* rows, int64_t m, bf16* out,
                        cudaStream_t stream) {
  if (m == 0 || cols == 0) return;
  const bool vec = vec_ok(cols, x, out);
  const int threads = row_threads(vec ? cols / 8 : cols);
  if (vec)
    launch_kernel(gather_rows_kernel<true>, m, threads, 0, stream, x, cols, rows, out);
  else
    launch_kernel(gather_rows_kernel<false>, m, threads, 0, stream, x, cols, rows, out);
}

void launch_sum_parts(const bf16* in, int64_t parts, int64_t count, bf16* out,
                      cudaStream_t stream) {
  if (count == 0) return;
  launch_kernel(sum_parts_kernel, grid_for(count, 256), 256, 0, stream, in, parts, count, out);
}

void launch_fill_rows(const bf16* bias, int64_t n, int64_t m, bf16* out, cudaStream_t stream) {
  if (n == 0 || m == 0) return;
  launch_kernel(fill_rows_kernel, grid_for(n * m, 256), 256, 0, stream, bias, n, m, out);
}

}  // namespace tpinfer::cuda
