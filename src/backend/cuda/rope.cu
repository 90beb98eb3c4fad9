// rope_write_kv: rotate-half RoPE of the q and k heads of each token's fused
// qkv row, in place, then the rotated k and the plain v into the paged cache at
// the token's slot. One block per token, one pass over its row.
//
// The angle is position * inv_freq[i] rounded to fp32 (one fp32 multiply, as
// Hugging Face forms it), then the precise sincosf (not __sinf/__cosf, whose
// error grows with the argument): the cpu reference takes std::cos/std::sin of
// the same fp32 angle.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {

__device__ __forceinline__ void store_cache8(bf16* p, const float (&f)[8]) {
  store8(p, f);
}
__device__ __forceinline__ void store_cache8(fp8* p, const float (&f)[8]) {
  store8_fp8(p, f);
}
__device__ __forceinline__ void store_cache(bf16* p, float f) {
  *p = __float2bfloat16(f);
}
__device__ __forceinline__ void store_cache(fp8* p, float f) {
  *p = __nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3);
}

// kW = 8 when head_dim / 2 is a multiple of 8 (16-byte accesses), else 1.
// C: the cache's element type, bf16 or fp8 (the rotated k is rounded once, from
// fp32, to whichever the cache holds).
template <int kW, typename C>
__global__ void rope_kernel(RopeParams p) {
  wait_for_prior_grids();
  extern __shared__ float cs[];  // [half] cosines, then [half] sines
  const int64_t t = blockIdx.x;
  const int d = p.head_dim, half = d / 2;
  const float pos = static_cast<float>(p.positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = pos * p.inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    cs[i] = c;
    cs[half + i] = s;
  }
  __syncthreads();

  const int64_t row_len = static_cast<int64_t>(p.q_heads + 2 * p.kv_heads) * d;
  const int64_t kv_width = static_cast<int64_t>(p.kv_heads) * d;
  bf16* row = p.qkv + t * row_len;
  const int64_t slot = p.slot_mapping[t];
  C* kdst = static_cast<C*>(p.k_cache) + slot * kv_width;
  C* vdst = static_cast<C*>(p.v_cache) + slot * kv_width;

  // q heads then k heads are adjacent in the row: rotate them as one run.
  const int rotated = p.q_heads + p.kv_heads;
  const int per_head = half / kW;
  for (int idx = threadIdx.x; idx < rotated * per_head; idx += blockDim.x) {
    const int h = idx / per_head, i = (idx % per_head) * kW;
    bf16* x = row + static_cast<int64_t>(h) * d;
    float x1[kW], x2[kW];
    if constexpr (kW == 8) {
      load8(x + i, x1);
      load8(x + half + i, x2);
    } else {
      x1[0] = __bfloat162float(x[i]);
      x2[0] = __bfloat162float(x[half + i]);
    }
    float y1[kW], y2[kW];
#pragma unroll
    for (int k = 0; k < kW; ++k) {
      const float c = cs[i + k], s = cs[half + i + k];
      y1[k] = x1[k] * c - x2[k] * s;
      y2[k] = x2[k] * c + x1[k] * s;
    }
    C* kd = h >= p.q_heads ? kdst + static_cast<int64_t>(h - p.q_heads) * d : nullptr;
    if constexpr (kW == 8) {
      store8(x + i, y1);
      store8(x + half + i, y2);
      if (kd) {
        store_cache8(kd + i, y1);
        store_cache8(kd + half + i, y2);
      }
    } else {
      x[i] = __float2bfloat16(y1[0]);
      x[half + i] = __float2bfloat16(y2[0]);
      if (kd) {
        store_cache(kd + i, y1[0]);
        store_cache(kd + half + i, y2[0]);
      }
    }
  }

  const bf16* v = row + static_cast<int64_t>(rotated) * d;
  if constexpr (kW == 8) {
    for (int64_t i = threadIdx.x * 8; i < kv_width; i += blockDim.x * 8) {
      if constexpr (sizeof(C) == 2) {
        *reinterpret_cast<Bf16x8*>(vdst + i) = *reinterpret_cast<const Bf16x8*>(v + i);
      } else {
        float f[8];
        load8(v + i, f);
        store8_fp8(vdst + i, f);
      }
    }
  } else {
    for (int64_t i = threadIdx.x; i < kv_width; i += blockDim.x)
      store_cache(vdst + i, __bfloat162float(v[i]));
  }
}

}  // namespace

void launch_rope_write_kv(const RopeParams& p, cudaStream_t stream) {
  if (p.n_tokens == 0) return;
  const size_t smem = static_cast<size_t>(p.head_dim) * sizeof(float);
  const bool vec = (p.head_dim / 2) % 8 == 0 && aligned16_host(p.qkv) &&
                   aligned16_host(p.k_cache) && aligned16_host(p.v_cache);
  const unsigned grid = static_cast<unsigned>(p.n_tokens);
  if (p.fp8_cache) {
    if (vec)
      launch_kernel(rope_kernel<8, fp8>, grid, 128, smem, stream, p);
    else
      launch_kernel(rope_kernel<1, fp8>, grid, 128, smem, stream, p);
  } else if (vec) {
    launch_kernel(rope_kernel<8, bf16>, grid, 128, smem, stream, p);
  } else {
    launch_kernel(rope_kernel<1, bf16>, grid, 128, smem, stream, p);
  }
}

}  // namespace tpinfer::cuda
