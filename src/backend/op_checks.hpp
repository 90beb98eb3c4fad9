#pragma once
// Argument checks every backend makes the same way, so a malformed call gets
// the same message on cpu and cuda. A failure is a bug in the caller (model or
// engine), not bad input: a restart would not help, so it carries kExitOther.
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace tpinfer {

std::string shape_str(const std::vector<int64_t>& shape);
std::string shape_str(const Tensor& t);

// Throws InternalError "<backend> backend: <op>: <msg>" (exit 1).
[[noreturn]] void backend_fail(const char* backend, const char* op, const std::string& msg);

// backend_fail unless cond; the message is only built when the check fails
// (these run on every op call).
#define TPINFER_OP_CHECK(backend, cond, op, msg)                  \
  do {                                                            \
    if (!(cond)) ::tpinfer::backend_fail((backend), (op), (msg)); \
  } while (0)

// t holds `want` values and has storage (or no elements); `why` ends the
// message of a wrong dtype.
void check_dtype_and_storage(const char* backend, const Tensor& t, DType want, const char* op,
                             const char* name, const char* why = "");

// The element count of a tensor of `shape`: throws on a negative size or a
// count whose bytes (up to 4 an element) would overflow int64.
int64_t checked_numel(const char* backend, const std::vector<int64_t>& shape);

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
// logprob_rows' arguments: the same logits layout, one target a row, k in
// [0, kMaxTopLogprobs], out fp32 [rows, 1 + k, 2].
SampleRowsLayout check_logprob_rows(const char* backend, const Tensor& logits, int64_t vocab,
                                    const std::vector<int32_t>& rows,
                                    const std::vector<int32_t>& targets, int k, const Tensor& out);
// The shapes of each op's operands, checked alike by every backend (dtypes
// and storage are each backend's own). Each returns the sizes the op runs
// over; the names and orders of the operands are backend.hpp's.
struct RowsCols {
  int64_t rows = 0, cols = 0;
};
struct LinearSizes {
  int64_t n = 0, k = 0, m = 0;
};
// table [vocab_rows, h], out [n_tokens, h]: returns {vocab_rows, h}.
RowsCols check_embed_shapes(const char* backend, const Tensor& table, int64_t n_tokens,
                            const Tensor& out);
// x [n, h], w [h], out [n, h]: returns {n, h}.
RowsCols check_rmsnorm_shapes(const char* backend, const Tensor& x, const Tensor& w,
                              const Tensor& out);
// residual, x, out [n, h], w [h], out not residual: returns {n, h}.
RowsCols check_add_rmsnorm_shapes(const char* backend, const Tensor& residual, const Tensor& x,
                                  const Tensor& w, const Tensor& out);
// x [n, k], w [m, k], bias [m] or null, out [n, m] not x.
LinearSizes check_linear_shapes(const char* backend, const Tensor& x, const Tensor& w,
                                const Tensor* bias, const Tensor& out);
// gate_up [n, 2 i], out [n, i]: returns {n, i}.
RowsCols check_silu_mul_shapes(const char* backend, const Tensor& gate_up, const Tensor& out);
// x [rows, c], out [m, c], every gathered row (max_row the largest, -1 for
// none) inside x: returns {m, c}.
RowsCols check_gather_rows_shapes(const char* backend, const Tensor& x, int64_t m, int64_t max_row,
                                  const Tensor& out);
// logits [n, c] with 1 <= valid_cols <= c, out [n, 2]: returns {n, c}.
RowsCols check_argmax_rows_shapes(const char* backend, const Tensor& logits, int64_t valid_cols,
                                  const Tensor& out);
// out [tp_size, local's shape...], not local.
void check_all_gather_shapes(const char* backend, const Tensor& local, int64_t tp_size,
                             const Tensor& out);
// qkv [n_tokens, (q_heads + 2 kv_heads) head_dim]: returns that row length.
int64_t check_qkv_shape(const char* backend, const Tensor& qkv, int64_t n_tokens,
                        const AttentionShape& a, const char* op);
// Both caches [num_blocks, block_size, kv_heads, head_dim], the same shape:
// returns num_blocks.
int64_t check_kv_cache_shapes(const char* backend, const Tensor& k_cache, const Tensor& v_cache,
                              int block_size, const AttentionShape& a, const char* op);
// inv_freq [head_dim / 2].
void check_inv_freq_shape(const char* backend, const Tensor& inv_freq, const AttentionShape& a);

// Every BatchLayout invariant the ops rely on (sizes, prefix offsets, positions
// inside their context, logit rows and their full_logits flags).
void validate_batch(const char* backend, const BatchLayout& b);

}  // namespace tpinfer
