// Paged causal attention for any even head_dim up to 256 (the tensor-core
// kernels cover 64 and 128): one warp per (token, q head), keys in chunks of 32
// (a lane per key for the scores), online softmax in base 2, each lane
// accumulating head_dim/32 output dims. Correct for every layout, not fast.
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {

constexpr int kMaxDim = 256;
constexpr int kWarps = 4;
constexpr int kPerLane = kMaxDim / 32;

// Two consecutive cache elements as fp32 (the row offset is even).
__device__ __forceinline__ float2 cache_pair(const bf16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ float2 cache_pair(const fp8* p) {
  return fp8x2_to_float2(*reinterpret_cast<const __nv_fp8x2_storage_t*>(p));
}

// C: the cache's element type (bf16 or fp8).
template <typename C>
__global__ void __launch_bounds__(kWarps * 32) attn_generic_kernel(AttentionParams p) {
  wait_for_prior_grids();
  __shared__ float qs[kWarps][kMaxDim];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int head = blockIdx.y * kWarps + warp;
  if (head >= p.q_heads) return;  // only warp-level synchronisation below
  const int64_t t = blockIdx.x;
  const int d_all = p.head_dim, group = p.q_heads / p.kv_heads, h = head / group;
  const int pos = p.positions[t];
  const int32_t* table = p.block_tables + static_cast<int64_t>(p.token_seq[t]) * p.table_stride;
  const int bs = p.block_size;
  auto row_of = [&](int key) {  // the cache row of `key` for kv head h
    const int64_t slot = static_cast<int64_t>(table[key / bs]) * bs + key % bs;
    return (slot * p.kv_heads + h) * d_all;
  };

  const bf16* q = p.qkv + t * p.qkv_stride + static_cast<int64_t>(head) * d_all;
  for (int d = lane; d < d_all; d += 32) qs[warp][d] = __bfloat162float(q[d]) * p.scale_log2;
  __syncwarp();

  float m = -INFINITY, l = 0.0f, acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) acc[i] = 0.0f;
  for (int c = 0; c <= pos; c += 32) {
    const int key = c + lane;
    float score = -INFINITY;
    if (key <= pos) {
      const C* kr = static_cast<const C*>(p.k_cache) + row_of(key);
      float dot = 0.0f;
      for (int d = 0; d < d_all / 2; ++d) {
        const float2 kv = cache_pair(kr + 2 * d);
        dot += qs[warp][2 * d] * kv.x + qs[warp][2 * d + 1] * kv.y;
      }
      score = dot;
    }
    const float m_new = fmaxf(m, warp_max(score));  // finite: key c <= pos
    const float alpha = exp2f(m - m_new);
    const float pk = key <= pos ? exp2f(score - m_new) : 0.0f;
    l = l * alpha + warp_sum(pk);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) acc[i] *= alpha;
    const int count = min(32, pos - c + 1);
    for (int j = 0; j < count; ++j) {
      const float w = __shfl_sync(0xffffffffu, pk, j);
      const C* vr = static_cast<const C*>(p.v_cache) + row_of(c + j);
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < d_all) acc[i] += w * cache_to_float(vr[d]);
      }
    }
    m = m_new;
  }
  bf16* o =
      p.out + t * static_cast<int64_t>(p.q_heads) * d_all + static_cast<int64_t>(head) * d_all;
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < d_all) o[d] = __float2bfloat16(acc[i] * inv);
  }
}

}  // namespace

void launch_attention_generic(const AttentionParams& p, cudaStream_t stream) {
  if (p.n_tokens == 0) return;
  if (p.head_dim > kMaxDim || p.head_dim % 2 != 0)
    throw_cuda_error(static_cast<int>(cudaErrorInvalidValue), "launch_attention_generic(head_dim)",
                     __FILE__, __LINE__);
  const dim3 grid(static_cast<unsigned>(p.n_tokens),
                  static_cast<unsigned>((p.q_heads + kWarps - 1) / kWarps));
  if (p.fp8_cache)
    launch_kernel(attn_generic_kernel<fp8>, grid, kWarps * 32, 0, stream, p);
  else
    launch_kernel(attn_generic_kernel<bf16>, grid, kWarps * 32, 0, stream, p);
}

}  // namespace tpinfer::cuda
