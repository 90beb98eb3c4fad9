// bf16 / fp16 <-> fp32 bit conversions. Bit manipulation rather than the
// compiler's _Float16 / __bf16 so the results do not depend on the compiler,
// the target or its flags (e.g. -ffast-math), and match a GPU kernel exactly.
#include "base/half.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/fp8.hpp"

namespace tpinfer {

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// `value >> shift` rounded to nearest, ties to even. shift in [1, 31].
uint32_t shift_round_even(uint32_t value, int shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((uint32_t{1} << shift) - 1);
  const uint32_t half = uint32_t{1} << (shift - 1);
  return (rem > half || (rem == half && (q & 1u))) ? q + 1 : q;
}

}  // namespace

uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  // A NaN must stay a NaN: rounding could carry its payload into infinity.
  // Keep the sign and the top payload bits and force the quiet bit.
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest even; an overflow
  // of the largest finite values carries into the exponent and gives infinity,
  // which is the correctly rounded result.
  const uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

float bf16_to_float(uint16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

uint16_t float_to_fp16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xFFu;
  const uint32_t mant = u & 0x7FFFFFu;
  if (exp == 0xFF) {
    if (mant == 0) return sign | 0x7C00u;  // infinity
    // Quiet NaN keeping the top payload bits.
    return static_cast<uint16_t>(sign | 0x7E00u | (mant >> 13));
  }
  if (exp == 0) return sign;  // zero or fp32 subnormal: far below fp16's smallest subnormal
  const int e = static_cast<int>(exp) - 127 + 15;  // fp16 biased exponent
  if (e >= 31) return sign | 0x7C00u;              // overflow
  if (e <= 0) {
    // fp16 subnormal: the value is m * 2^(exp - 150) with the implicit bit in
    // m, and the result counts units of 2^-24, so shift by 126 - exp.
    const int shift = 126 - static_cast<int>(exp);
    if (shift > 25) return sign;  // below half the smallest subnormal: rounds to zero
    // A carry out of the 10 subnormal bits gives 0x400, the smallest normal: right.
    return static_cast<uint16_t>(sign | shift_round_even(mant | 0x800000u, shift));
  }
  // Normal: exponent and mantissa are rounded together so that a carry out of
  // the mantissa bumps the exponent (and the largest values become infinity).
  const uint32_t combined = (static_cast<uint32_t>(e) << 23) | mant;
  return static_cast<uint16_t>(sign | shift_round_even(combined, 13));
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in fp32.
    const float mag = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_float(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

float round_to_dtype(DType d, float v) {
  switch (d) {
    case DType::f32:
      return v;
    case DType::bf16:
      return bf16_to_float(float_to_bf16(v));
    case DType::f16:
      return fp16_to_float(float_to_fp16(v));
    case DType::fp8_e4m3:
      return fp8_e4m3_to_float(float_to_fp8_e4m3(v));
  }
  return v;
}

// bf16 is the top half of an fp32 (a shift the compiler vectorises); fp16
// goes through a 65536-entry table built once from fp16_to_float.
void widen_to_float(DType d, const uint16_t* src, float* dst, size_t n) {
  if (d == DType::bf16) {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
      std::memcpy(dst + i, &bits, sizeof bits);
    }
    return;
  }
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < t.size(); ++h) t[h] = fp16_to_float(static_cast<uint16_t>(h));
    return t;
  }();
  for (size_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

}  // namespace tpinfer
