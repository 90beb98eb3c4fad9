#pragma once
// Philox4x32-10 counter-based generator (Salmon et al., SC'11): the random
// numbers are a pure function of (key, counter), so a request's sampled tokens
// and a tensor's random weights do not depend on order, batching or layout, and
// a GPU kernel can reproduce them exactly.
#include <cmath>
#include <cstddef>
#include <cstdint>

// Host and device: the CUDA backend evaluates the same formulas in kernels.
#if defined(__CUDACC__)
#define TPINFER_HD __host__ __device__
#else
#define TPINFER_HD
#endif

namespace tpinfer {

template <int N>
struct Words {
  uint32_t w[N];
  TPINFER_HD uint32_t operator[](int i) const { return w[i]; }
};
struct Floats2 {
  float f[2];
  TPINFER_HD float operator[](int i) const { return f[i]; }
  TPINFER_HD float operator[](uint64_t i) const { return f[i]; }
};

TPINFER_HD inline Words<4> philox4x32(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 bits of precision (exact in float).
TPINFER_HD inline float philox_uniform(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Two standard normals from one Philox draw (Box-Muller on its first two words).
TPINFER_HD inline Floats2 philox_normal2(uint64_t key, uint64_t counter_hi, uint64_t counter_lo) {
  const auto r = philox4x32(key, counter_hi, counter_lo);
  const double u1 = (static_cast<double>(r[0]) + 1.0) / 4294967296.0;  // (0, 1]
  const double u2 = static_cast<double>(r[1]) / 4294967296.0;
  const double radius = sqrt(-2.0 * log(u1));
  const double angle = 6.283185307179586 * u2;
  return {{static_cast<float>(radius * cos(angle)), static_cast<float>(radius * sin(angle))}};
}

// FNV-1a, for turning names and ids into keys.
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace tpinfer
