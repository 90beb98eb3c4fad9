#include <string>

#include "tpinfer/backend.hpp"
#include "tpinfer/error.hpp"

namespace tpinfer {

Tensor Tensor::first_rows(int64_t n) const {
  if (shape.empty() || n < 0 || n > shape[0])
    throw Error("Tensor::first_rows(" + std::to_string(n) + ") of a tensor with " +
                    (shape.empty() ? std::string("no shape") : std::to_string(shape[0]) + " rows"),
                kExitOther);
  // Rows are the outermost dimension of a row-major tensor, so the first n rows
  // start where the tensor starts: only the shape changes.
  Tensor view = *this;
  view.shape[0] = n;
  return view;
}

}  // namespace tpinfer
