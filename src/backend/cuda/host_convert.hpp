#pragma once
// fp32 <-> bf16 / fp16 conversions on the host, for upload and download through
// the pinned staging buffer. Round to nearest even; NaN stays NaN (a test
// poisons outputs with NaN and must see it come back).
#include <cstdint>
#include <cstring>

#include "base/half.hpp"

namespace tpinfer::cuda {

inline void floats_to_bf16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, sizeof u);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    dst[i] = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : rounded);
  }
}

inline void bf16_to_floats(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &u, sizeof u);
  }
}

inline void floats_to_f16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = float_to_fp16(src[i]);
}

inline void f16_to_floats(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = fp16_to_float(src[i]);
}

}  // namespace tpinfer::cuda
