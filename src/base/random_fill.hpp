#pragma once
// The seeded random weights of `make-model` and `bench --random-weights`, as a
// formula any backend can evaluate where the tensor lives: element (i, j) of a
// destination [rows, cols] block is element (row0 + i, col0 + j) of the full
// tensor, whose flat index picks a Philox normal:
//   z     = philox_normal2(key, 0, index / 2)[index % 2]
//   value = mean + stddev * z, rounded to `round_to`
#include <cstdint>
#include <vector>

#include "base/dtype.hpp"
#include "base/philox.hpp"

namespace tpinfer {

struct RandomFill {
  uint64_t key = 0;  // per tensor: fnv1a64(name, then the seed's 8 little-endian bytes)
  float mean = 0.0f;
  float stddev = 1.0f;
  DType round_to = DType::f32;
  int64_t row0 = 0, col0 = 0;  // where the block starts in the full tensor
  int64_t full_cols = 1;       // row length of the full tensor (1 for a vector)
};

// The unrounded value (the caller rounds to round_to).
TPINFER_HD inline float random_fill_value(const RandomFill& f, int64_t i, int64_t j) {
  const uint64_t index = static_cast<uint64_t>((f.row0 + i) * f.full_cols + f.col0 + j);
  const float z = philox_normal2(f.key, 0, index / 2)[index % 2];
  return f.mean + f.stddev * z;
}

// The rows x cols block `f` describes, rounded to f.round_to, computed on the host.
std::vector<float> random_fill_block(const RandomFill& f, int64_t rows, int64_t cols);

}  // namespace tpinfer
