// FP8 E4M3 conversion (base/fp8.hpp) against the definition: every code's
// value, and float -> code as the nearest finite value with ties to the even
// code, saturating at 448, NaN kept; found by searching all 254 finite codes,
// with no shared logic.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "base/fp8.hpp"

namespace tpinfer {
namespace {

// The finite values by definition: (-1)^s 2^(e-7) (1 + m/8), or 2^-6 m/8 when e = 0.
double code_value(int c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (c & 0x80) ? -v : v;
}

bool is_nan_code(int c) {
  return (c & 0x7f) == 0x7f;
}

uint8_t reference_encode(float f) {
  if (std::isnan(f)) return 0x7f;
  const double x = std::clamp<double>(f, -448.0, 448.0);
  int best = -1;
  double best_err = 0;
  for (int c = 0; c < 256; ++c) {
    if (is_nan_code(c) || c == 0x80) continue;  // -0 only for negative zero inputs
    const double err = std::abs(code_value(c) - x);
    if (best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_err = err;
    }
  }
  // The sign of zero (and of values rounding to zero) follows the input.
  if ((best & 0x7f) == 0 && std::signbit(f)) return 0x80;
  return static_cast<uint8_t>(best);
}

TEST(Fp8E4m3, EveryCodeDecodesToItsDefinedValue) {
  for (int c = 0; c < 256; ++c) {
    const float v = fp8_e4m3_to_float(static_cast<uint8_t>(c));
    if (is_nan_code(c)) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), code_value(c)) << c;
    EXPECT_EQ(float_to_fp8_e4m3(v), c) << "round trip of code " << c;
    EXPECT_EQ(fp8_e4m3_table()[c], v);
  }
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));
}

TEST(Fp8E4m3, EncodesToTheNearestValueTiesToEven) {
  std::vector<float> xs;
  // Every midpoint between neighbouring codes (the ties), and just either side.
  for (int c = 0; c < 0x7e; ++c) {
    const float mid = static_cast<float>((code_value(c) + code_value(c + 1)) / 2);
    for (float s : {1.0f, -1.0f}) {
      xs.push_back(s * mid);
      xs.push_back(s * std::nextafter(mid, 0.0f));
      xs.push_back(s * std::nextafter(mid, 1000.0f));
    }
  }
  std::mt19937_64 rng(8);
  for (int i = 0; i < 200000; ++i) {
    std::uniform_real_distribution<float> exp(-14.0f, 10.0f);
    const float mag = std::exp2(exp(rng));
    xs.push_back((rng() & 1) ? mag : -mag);
  }
  for (float x : {0.0f, -0.0f, 448.0f, 463.9f, 464.0f, 500.0f, 1e30f, -1e30f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::denorm_min(), 1e-40f})
    xs.push_back(x);
  int bad = 0;
  for (float x : xs) {
    const uint8_t got = float_to_fp8_e4m3(x), want = reference_encode(x);
    if (got != want && bad++ < 10)
      ADD_FAILURE() << x << " -> " << int(got) << ", want " << int(want);
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
}

}  // namespace
}  // namespace tpinfer
