#include "base/random_fill.hpp"

#include <vector>

#include "base/half.hpp"

namespace tpinfer {

std::vector<float> random_fill_block(const RandomFill& f, int64_t rows, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  // Threads only pay off on big tensors; small ones would mostly wait on the team.
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t{1} << 18))
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      out[i * cols + j] = round_to_dtype(f.round_to, random_fill_value(f, i, j));
  return out;
}

}  // namespace tpinfer
