#pragma once
// The arithmetic the host sampler (base/sampler.cpp) and the GPU sampler
// (backend/cuda/sampling.cu) share, written so that both compute the same bits:
// the candidate order as one 64-bit key, a token's weight exp((logit - max) / T)
// in IEEE single operations only, and the weight as a fixed-point integer.
//
// Host code must not evaluate weight() itself: a compiler that fuses a
// multiply and an add into one FMA changes the last bit. sampler.cpp is
// compiled with -ffp-contract=off and exports it as sampling_weight()
// (sampler.hpp); on the device the _rn intrinsics are never fused.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/philox.hpp"  // TPINFER_HD

namespace tpinfer::sampling {

TPINFER_HD inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
TPINFER_HD inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// ---------------------------------------------------------------- order
// Candidates are ordered (logit descending, id ascending): the smaller key
// comes first. NaN counts as -inf and -0 as +0 (they tie with +0).
using Key = uint64_t;

// Float bits made monotone as unsigned integers (negative floats flipped
// entirely, positive ones' sign bit set).
TPINFER_HD inline uint32_t ascending_bits(float x) {
  const uint32_t b = float_bits(x);
  return b ^ (static_cast<uint32_t>(static_cast<int32_t>(b) >> 31) | 0x80000000u);
}
TPINFER_HD inline float from_ascending_bits(uint32_t o) {
  return bits_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}
// The logit a candidate is ranked by: NaN becomes -inf, -0 becomes +0.
TPINFER_HD inline float rank_logit(float x) {
  if (x != x) return -INFINITY;
  return x == 0.0f ? 0.0f : x;
}
TPINFER_HD inline Key make_key(float logit, uint32_t id) {
  return (static_cast<Key>(~ascending_bits(rank_logit(logit))) << 32) | id;
}
TPINFER_HD inline float key_logit(Key k) {
  return from_ascending_bits(~static_cast<uint32_t>(k >> 32));
}
TPINFER_HD inline uint32_t key_id(Key k) {
  return static_cast<uint32_t>(k);
}

// ---------------------------------------------------------------- weight
namespace detail {
TPINFER_HD inline float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TPINFER_HD inline float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
TPINFER_HD inline float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
TPINFER_HD inline float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
TPINFER_HD inline float round_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::rint(x);  // the default rounding mode: to nearest, ties to even
#endif
}
}  // namespace detail

// Below this the weight is 0 (e^-86 ~ 4e-38: the result stays a normal float).
constexpr float kWeightCutoff = -86.0f;

// exp(x) for x <= 0 (within ~2 ulp): Cody-Waite reduction by ln 2 and Cephes'
// expf polynomial, one IEEE operation at a time. exp(0) is exactly 1.
TPINFER_HD inline float exp_nonpositive(float x) {
  using namespace detail;
  if (!(x >= kWeightCutoff)) return 0.0f;                    // also -inf and NaN
  const float k = round_even(mul(x, 1.44269504088896341f));  // in [-124, 0]
  float r = sub(x, mul(k, 0.693359375f));                    // ln 2 high part: k * it is exact
  r = sub(r, mul(k, -2.12194440e-4f));                       // ln 2 low part
  float p = 1.9875691500e-4f;
  p = add(mul(p, r), 1.3981999507e-3f);
  p = add(mul(p, r), 8.3334519073e-3f);
  p = add(mul(p, r), 4.1665795894e-2f);
  p = add(mul(p, r), 1.6666665459e-1f);
  p = add(mul(p, r), 5.0000001201e-1f);
  const float y = add(add(mul(mul(p, r), r), r), 1.0f);
  const float scale = bits_float(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23);
  return mul(y, scale);  // 2^k, exact
}

// A candidate's weight at temperature T > 0; the best one (logit == max) weighs 1.
// Dividing the difference (not multiplying by 1/T) keeps T -> 0 finite.
TPINFER_HD inline float weight(float logit, float max_logit, float temperature) {
  return exp_nonpositive(detail::div(detail::sub(logit, max_logit), temperature));
}

// ---------------------------------------------------------------- fixed point
// A weight w in [0, 1] as the integer V = floor(w * 2^(H + 32)), kept as
// hi = V >> 32 (<= 2^H) and lo = V mod 2^32, where H = 64 - bit_width(vocab):
// vocab his and vocab los each sum in a uint64 without overflow, and
// (sum hi) * 2^32 + (sum lo) is the exact sum of the Vs (< 2^96). Weights of
// 2^-(H + 9) and more convert exactly (H = 47 at a vocabulary of 128256: every
// weight above 5e-20); smaller ones lose less than 2^-(H + 32) each.
TPINFER_HD inline int fixed_shift(int64_t vocab) {
  int bits = 0;
  for (uint64_t v = static_cast<uint64_t>(vocab); v != 0; v >>= 1) ++bits;
  return 64 - bits;
}

struct Fixed {
  uint64_t hi;
  uint32_t lo;
};

TPINFER_HD inline Fixed to_fixed(float w, int H) {
  const uint32_t b = float_bits(w);
  if ((b & 0x7fffffffu) == 0) return {0, 0};
  int e = static_cast<int>((b >> 23) & 0xffu);
  uint32_t m = b & 0x7fffffu;
  if (e == 0)
    e = 1;  // subnormal
  else
    m |= 0x800000u;
  const int s = e - 150 + H + 32;  // V = m * 2^s
  if (s >= 32) return {static_cast<uint64_t>(m) << (s - 32), 0};
  if (s >= 0) {
    const uint64_t v = static_cast<uint64_t>(m) << s;  // < 2^55
    return {v >> 32, static_cast<uint32_t>(v)};
  }
  if (s > -24) return {0, m >> -s};
  return {0, 0};
}

// Sums of fixed-point weights (< 2^96) and the thresholds derived from them.
__extension__ typedef unsigned __int128 U128;

TPINFER_HD inline U128 fixed_value(Fixed f) {
  return (static_cast<U128>(f.hi) << 32) + f.lo;
}

// ceil(top_p * total), exactly; 0 when top_p <= 0. top_p < 1 (so its float
// exponent is at most -24 below its 24-bit mantissa). The nucleus is the
// shortest prefix whose weight reaches it.
TPINFER_HD inline U128 top_p_threshold(float top_p, U128 total) {
  if (!(top_p > 0.0f)) return 0;
  const uint32_t b = float_bits(top_p);
  const int e = static_cast<int>((b >> 23) & 0xffu);
  const uint32_t m = e ? ((b & 0x7fffffu) | 0x800000u) : (b & 0x7fffffu);
  const int shift = 150 - (e ? e : 1);  // top_p = m / 2^shift, shift >= 24
  const U128 p = total * m;             // < 2^120
  if (shift >= 128) return p != 0 ? 1 : 0;
  const U128 q = p >> shift;
  return (q << shift) != p ? q + 1 : q;
}

// floor(u * mass) for the Philox draw u = philox_uniform(bits) = (bits >> 8) / 2^24,
// exactly: the first candidate whose running weight exceeds it is drawn.
TPINFER_HD inline U128 draw_target(uint32_t bits, U128 mass) {
  return (mass * (bits >> 8)) >> 24;
}

}  // namespace tpinfer::sampling
