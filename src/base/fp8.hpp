#pragma once
// FP8 E4M3 (the OCP "e4m3fn" format, torch.float8_e4m3fn), the KV cache's
// optional storage type: 1 sign, 4 exponent (bias 7) and 3 mantissa bits, no
// infinities, 0x7f / 0xff NaN, largest finite 448, smallest subnormal 2^-9.
// The host conversion is bit-exact with CUDA's __nv_cvt_float_to_fp8(x,
// __NV_SATFINITE, __NV_E4M3): round to nearest even, magnitudes past 448
// (infinities included) saturate to 448, NaN stays NaN. Values are stored
// unscaled (a scale of 1, as vLLM's default fp8 KV cache), so K and V entries
// keep about 2 significant digits (relative step 2^-3) down to 2^-6 and fixed
// steps of 2^-9 below it.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tpinfer {

inline uint8_t float_to_fp8_e4m3(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  const uint32_t mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return 0x7f;          // NaN
  if (mag >= 0x43e00000u) return sign | 0x7e;  // >= 448 (and inf): saturate
  if (mag < 0x3c800000u) {                     // below 2^-6: subnormal steps of 2^-9
    float a;
    std::memcpy(&a, &mag, 4);
    const float q = std::nearbyint(a * 512.0f);  // exact scaling; ties to even
    return sign | static_cast<uint8_t>(q);       // 8 rounds up into the smallest normal
  }
  // Normal: rebias the exponent (127 -> 7) and round the mantissa to 3 bits,
  // ties to even; a carry moves into the exponent as it should.
  uint32_t r = mag - (120u << 23);
  r += 0x7ffffu + ((r >> 20) & 1u);
  const uint32_t code = r >> 20;
  return sign | static_cast<uint8_t>(code > 0x7e ? 0x7e : code);
}

inline float fp8_e4m3_to_float(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7)
    v = std::nanf("");
  else if (e == 0)
    v = std::ldexp(static_cast<float>(m), -9);
  else
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  return (b & 0x80) ? -v : v;
}

// All 256 values, for readers that decode many entries.
inline const std::array<float, 256>& fp8_e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = fp8_e4m3_to_float(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

}  // namespace tpinfer
