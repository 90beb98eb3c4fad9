#pragma once
// Argument checks every backend makes the same way, so a malformed call gets
// the same message on cpu and cuda. A failure is a bug in the caller (model or
// engine), not bad input: a restart would not help, so it carries kExitOther.
#include <string>
#include <vector>

#include "tpinfer/backend.hpp"

namespace tpinfer {

std::string shape_str(const std::vector<int64_t>& shape);
std::string shape_str(const Tensor& t);

// Throws Error "<backend> backend: <op>: <msg>".
[[noreturn]] void backend_fail(const char* backend, const char* op, const std::string& msg);

// t read as a matrix: rows (shape[0]) by everything else.
void check_matrix(const char* backend, const Tensor& t, int64_t rows, int64_t cols, const char* op,
                  const char* name);
void check_attention_shape(const char* backend, const AttentionShape& a, const char* op);
// sample_rows' arguments (backend.hpp): logits [n, cols] or [parts, n, cols]
// covering vocab columns, one params entry per row index inside n, out fp32
// [rows, 2]. Returns the logits' layout; parts is 1 for a 2-D tensor.
struct SampleRowsLayout {
  int64_t parts = 1, n = 0, cols = 0;
};
SampleRowsLayout check_sample_rows(const char* backend, const Tensor& logits, int64_t vocab,
                                   const std::vector<int32_t>& rows,
                                   const std::vector<RowSampling>& params, const Tensor& out);
// Every BatchLayout invariant the ops rely on (sizes, prefix offsets, positions
// inside their context, logit rows and their full_logits flags).
void validate_batch(const char* backend, const BatchLayout& b);

}  // namespace tpinfer
