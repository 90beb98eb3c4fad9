#include <string>

#include "backend/backend.hpp"
#include "base/error.hpp"
#include "base/random_fill.hpp"

namespace tpinfer {

Tensor Tensor::first_rows(int64_t n) const {
  return rows(0, n);
}

Tensor Tensor::rows(int64_t first, int64_t n) const {
  if (shape.empty() || first < 0 || n < 0 || first + n > shape[0])
    throw Error("Tensor::rows(" + std::to_string(first) + ", " + std::to_string(n) +
                    ") of a tensor with " +
                    (shape.empty() ? std::string("no shape") : std::to_string(shape[0]) + " rows"),
                kExitOther);
  // Rows are the outermost dimension of a row-major tensor, so a run of rows is
  // contiguous: the view only moves the start and changes the shape.
  Tensor view = *this;
  view.shape[0] = n;
  view.data = static_cast<char*>(data) + first * cols() * dtype_bytes(dtype);
  return view;
}


}  // namespace tpinfer
