#pragma once
// Small device helpers shared by the kernels: 16-byte bf16 vectors, float
// conversions, and warp / block reductions. Included only by .cu files.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tpinfer::cuda {

using bf16 = __nv_bfloat16;

// A generic pointer into shared memory as a shared-space address.
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared (a shared-space address), bypassing L1;
// zero-filled when !valid (src unread). sm_80 and later.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  cp_async16(smem_u32(dst), src, valid);
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Two floats as a bf16x2 register (round to nearest).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Eight bf16 values moved as one 16-byte load or store.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};

__device__ __forceinline__ void load8(const bf16* p, float (&f)[8]) {
  const Bf16x8 v = *reinterpret_cast<const Bf16x8*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(v.h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ void store8(bf16* p, const float (&f)[8]) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<Bf16x8*>(p) = v;
}

// FP8 E4M3 (base/fp8.hpp): saturating round-to-nearest-even from fp32, the
// conversion the host's float_to_fp8_e4m3 reproduces bit for bit. In a pair,
// .x is the low byte.
using fp8 = __nv_fp8_storage_t;

__device__ __forceinline__ __nv_fp8x2_storage_t float2_to_fp8x2(float lo, float hi) {
  return __nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3);
}

__device__ __forceinline__ float2 fp8x2_to_float2(__nv_fp8x2_storage_t v) {
  const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2(v, __NV_E4M3);  // exact: e4m3 fits f16
  __half2 h;
  h = raw;
  return __half22float2(h);
}

// Eight values stored as eight fp8 bytes (one 8-byte store; p 8-byte aligned).
__device__ __forceinline__ void store8_fp8(fp8* p, const float (&f)[8]) {
  uint2 v;
  v.x = static_cast<uint32_t>(float2_to_fp8x2(f[0], f[1])) |
        static_cast<uint32_t>(float2_to_fp8x2(f[2], f[3])) << 16;
  v.y = static_cast<uint32_t>(float2_to_fp8x2(f[4], f[5])) |
        static_cast<uint32_t>(float2_to_fp8x2(f[6], f[7])) << 16;
  *reinterpret_cast<uint2*>(p) = v;
}

__device__ __forceinline__ float fp8_to_float(fp8 v) {
  return fp8x2_to_float2(static_cast<__nv_fp8x2_storage_t>(v)).x;
}

// A cache element as fp32, for either cache type.
__device__ __forceinline__ float cache_to_float(bf16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float cache_to_float(fp8 v) {
  return fp8_to_float(v);
}

// An element of a 32- or 16-bit float type as fp32, and back (round to nearest even).
__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(bf16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float t = lane < warps ? scratch[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();  // scratch may be reused right after
  return t;
}

inline bool aligned16_host(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

}  // namespace tpinfer::cuda
