#include "backend/op_checks.hpp"

#include <limits>

#include "base/dtype.hpp"
#include "base/error.hpp"
#include "base/request.hpp"

namespace tpinfer {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string shape_str(const Tensor& t) {
  return shape_str(t.shape);
}

void backend_fail(const char* backend, const char* op, const std::string& msg) {
  throw InternalError(std::string(backend) + " backend: " + op + ": " + msg);
}

#define OP_CHECK(cond, msg) TPINFER_OP_CHECK(backend, cond, op, msg)

void check_dtype_and_storage(const char* backend, const Tensor& t, DType want, const char* op,
                             const char* name, const char* why) {
  OP_CHECK(t.dtype == want, std::string(name) + " has dtype " + dtype_name(t.dtype) +
                                ", expected " + dtype_name(want) + why);
  OP_CHECK(t.data != nullptr || t.numel() == 0, std::string(name) + " has no storage");
}

int64_t checked_numel(const char* backend, const std::vector<int64_t>& shape) {
  const char* op = "alloc";
  int64_t n = 1;
  for (int64_t s : shape) {
    OP_CHECK(s >= 0 && (s == 0 || n <= std::numeric_limits<int64_t>::max() / 4 / s),
             "bad shape " + shape_str(shape));
    n *= s;
  }
  return n;
}

void check_matrix(const char* backend, const Tensor& t, int64_t rows, int64_t cols, const char* op,
                  const char* name) {
  OP_CHECK(!t.shape.empty() && t.rows() == rows && t.cols() == cols,
           std::string(name) + " is " + shape_str(t) + ", expected " + std::to_string(rows) +
               " rows of " + std::to_string(cols));
}

void check_attention_shape(const char* backend, const AttentionShape& a, const char* op) {
  OP_CHECK(a.q_heads > 0 && a.kv_heads > 0 && a.head_dim > 0 && a.q_heads % a.kv_heads == 0,
           "bad attention shape: q_heads " + std::to_string(a.q_heads) + ", kv_heads " +
               std::to_string(a.kv_heads) + ", head_dim " + std::to_string(a.head_dim) +
               " (need positive sizes and q_heads a multiple of kv_heads)");
}

SampleRowsLayout check_sample_rows(const char* backend, const Tensor& logits, int64_t vocab,
                                   const std::vector<int32_t>& rows,
                                   const std::vector<RowSampling>& params, const Tensor& out) {
  const char* op = "sample_rows";
  OP_CHECK(logits.shape.size() == 2 || logits.shape.size() == 3,
           "logits is " + shape_str(logits) + ", expected [n, cols] or [parts, n, cols]");
  SampleRowsLayout l;
  if (logits.shape.size() == 3) l.parts = logits.shape[0];
  l.n = logits.shape[logits.shape.size() - 2];
  l.cols = logits.shape.back();
  OP_CHECK(logits.data != nullptr || logits.numel() == 0, "logits has no storage");
  // Tokens travel as fp32 (exact below 2^24) and are ranked as 32-bit ids.
  OP_CHECK(vocab >= 1 && vocab <= l.parts * l.cols && vocab < (int64_t{1} << 24),
           "vocab " + std::to_string(vocab) + " outside logits " + shape_str(logits) +
               " (or not below 2^24)");
  OP_CHECK(rows.size() == params.size(), std::to_string(rows.size()) + " rows but " +
                                             std::to_string(params.size()) + " sampling params");
  for (int32_t r : rows)
    OP_CHECK(r >= 0 && r < l.n,
             "row " + std::to_string(r) + " outside logits " + shape_str(logits));
  if (rows.empty()) return l;
  OP_CHECK(out.dtype == DType::f32 && out.data != nullptr, "out must be float32 storage");
  check_matrix(backend, out, static_cast<int64_t>(rows.size()), 2, op, "out");
  return l;
}

SampleRowsLayout check_logprob_rows(const char* backend, const Tensor& logits, int64_t vocab,
                                    const std::vector<int32_t>& rows,
                                    const std::vector<int32_t>& targets, int k, const Tensor& out) {
  const char* op = "logprob_rows";
  OP_CHECK(targets.size() == rows.size(), std::to_string(rows.size()) + " rows but " +
                                              std::to_string(targets.size()) + " targets");
  OP_CHECK(k >= 0 && k <= kMaxTopLogprobs,
           "k " + std::to_string(k) + " outside [0, " + std::to_string(kMaxTopLogprobs) + "]");
  const SampleRowsLayout l =
      check_sample_rows(backend, logits, vocab, rows, std::vector<RowSampling>(rows.size()),
                        Tensor{out.data, out.dtype, {static_cast<int64_t>(rows.size()), 2}});
  for (int32_t t : targets)
    OP_CHECK(t < vocab,
             "target " + std::to_string(t) + " outside the vocab " + std::to_string(vocab));
  if (rows.empty()) return l;
  OP_CHECK(out.shape.size() == 3 && out.shape[0] == static_cast<int64_t>(rows.size()) &&
               out.shape[1] == 1 + k && out.shape[2] == 2,
           "out is " + shape_str(out) + ", expected [" + std::to_string(rows.size()) + ", " +
               std::to_string(1 + k) + ", 2]");
  return l;
}

RowsCols check_embed_shapes(const char* backend, const Tensor& table, int64_t n_tokens,
                            const Tensor& out) {
  const char* op = "embed";
  OP_CHECK(table.shape.size() == 2, "table is " + shape_str(table) + ", expected 2-D");
  check_matrix(backend, out, n_tokens, table.shape[1], op, "out");
  return {table.shape[0], table.shape[1]};
}

RowsCols check_rmsnorm_shapes(const char* backend, const Tensor& x, const Tensor& w,
                              const Tensor& out) {
  const char* op = "rmsnorm";
  OP_CHECK(!x.shape.empty() && w.numel() == x.cols(),
           "x is " + shape_str(x) + ", w is " + shape_str(w));
  check_matrix(backend, out, x.rows(), x.cols(), op, "out");
  return {x.rows(), x.cols()};
}

RowsCols check_add_rmsnorm_shapes(const char* backend, const Tensor& residual, const Tensor& x,
                                  const Tensor& w, const Tensor& out) {
  const char* op = "add_rmsnorm";
  const int64_t n = residual.rows(), h = residual.cols();
  OP_CHECK(!residual.shape.empty() && w.numel() == h,
           "residual is " + shape_str(residual) + ", w is " + shape_str(w));
  check_matrix(backend, x, n, h, op, "x");
  check_matrix(backend, out, n, h, op, "out");
  OP_CHECK(out.data != residual.data || n * h == 0, "out must not alias residual");
  return {n, h};
}

LinearSizes check_linear_shapes(const char* backend, const Tensor& x, const Tensor& w,
                                const Tensor* bias, const Tensor& out) {
  const char* op = "linear";
  OP_CHECK(w.shape.size() == 2 && !x.shape.empty() && x.cols() == w.shape[1],
           "x is " + shape_str(x) + ", w is " + shape_str(w) + " (expected x [n, k], w [m, k])");
  const LinearSizes s{x.rows(), w.shape[1], w.shape[0]};
  check_matrix(backend, out, s.n, s.m, op, "out");
  if (bias != nullptr)
    OP_CHECK(bias->numel() == s.m, "bias is " + shape_str(*bias) + ", w is " + shape_str(w));
  OP_CHECK(out.data != x.data || s.n == 0, "out must not alias x");
  return s;
}

RowsCols check_silu_mul_shapes(const char* backend, const Tensor& gate_up, const Tensor& out) {
  const char* op = "silu_mul";
  const int64_t n = gate_up.rows(), two_i = gate_up.cols();
  OP_CHECK(!gate_up.shape.empty() && two_i % 2 == 0,
           "gate_up is " + shape_str(gate_up) + ", expected [n, 2*i]");
  check_matrix(backend, out, n, two_i / 2, op, "out");
  return {n, two_i / 2};
}

RowsCols check_gather_rows_shapes(const char* backend, const Tensor& x, int64_t m, int64_t max_row,
                                  const Tensor& out) {
  const char* op = "gather_rows";
  OP_CHECK(!x.shape.empty(), "x has no shape");
  check_matrix(backend, out, m, x.cols(), op, "out");
  OP_CHECK(max_row < x.rows(),
           "logit row " + std::to_string(max_row) + " outside x " + shape_str(x));
  return {m, x.cols()};
}

RowsCols check_argmax_rows_shapes(const char* backend, const Tensor& logits, int64_t valid_cols,
                                  const Tensor& out) {
  const char* op = "argmax_rows";
  OP_CHECK(!logits.shape.empty() && valid_cols >= 1 && valid_cols <= logits.cols(),
           "valid_cols " + std::to_string(valid_cols) + " outside logits " + shape_str(logits));
  check_matrix(backend, out, logits.rows(), 2, op, "out");
  return {logits.rows(), logits.cols()};
}

void check_all_gather_shapes(const char* backend, const Tensor& local, int64_t tp_size,
                             const Tensor& out) {
  const char* op = "all_gather";
  std::vector<int64_t> want{tp_size};
  want.insert(want.end(), local.shape.begin(), local.shape.end());
  OP_CHECK(out.shape == want, "out is " + shape_str(out) + ", expected " + shape_str(want) +
                                  " for local " + shape_str(local));
  OP_CHECK(local.data != out.data || local.numel() == 0, "out must not alias local");
}

int64_t check_qkv_shape(const char* backend, const Tensor& qkv, int64_t n_tokens,
                        const AttentionShape& a, const char* op) {
  const int64_t row = (a.q_heads + 2 * a.kv_heads) * a.head_dim;
  check_matrix(backend, qkv, n_tokens, row, op, "qkv");
  return row;
}

int64_t check_kv_cache_shapes(const char* backend, const Tensor& k_cache, const Tensor& v_cache,
                              int block_size, const AttentionShape& a, const char* op) {
  for (const Tensor* c : {&k_cache, &v_cache})
    OP_CHECK(c->shape.size() == 4 && c->shape[1] == block_size && c->shape[2] == a.kv_heads &&
                 c->shape[3] == a.head_dim,
             std::string(c == &k_cache ? "k_cache" : "v_cache") + " is " + shape_str(*c) +
                 ", expected [num_blocks, " + std::to_string(block_size) + ", " +
                 std::to_string(a.kv_heads) + ", " + std::to_string(a.head_dim) + "]");
  OP_CHECK(k_cache.shape == v_cache.shape,
           "k_cache " + shape_str(k_cache) + " and v_cache " + shape_str(v_cache) + " differ");
  return k_cache.shape[0];
}

void check_inv_freq_shape(const char* backend, const Tensor& inv_freq, const AttentionShape& a) {
  const char* op = "rope_write_kv";
  OP_CHECK(inv_freq.numel() == a.head_dim / 2,
           "inv_freq is " + shape_str(inv_freq) +
               ", expected head_dim/2 = " + std::to_string(a.head_dim / 2) + " values");
}

void validate_batch(const char* backend, const BatchLayout& b) {
  const char* op = "set_batch";
  const size_t n = b.token_ids.size();
  const int32_t seqs = b.num_seqs();
  OP_CHECK(b.block_size > 0, "block_size " + std::to_string(b.block_size));
  OP_CHECK(b.positions.size() == n && b.slot_mapping.size() == n,
           std::to_string(n) + " tokens but " + std::to_string(b.positions.size()) +
               " positions and " + std::to_string(b.slot_mapping.size()) + " slots");
  OP_CHECK(b.query_start.size() == static_cast<size_t>(seqs) + 1 && b.query_start[0] == 0 &&
               b.query_start[seqs] == static_cast<int32_t>(n),
           "query_start has " + std::to_string(b.query_start.size()) + " entries for " +
               std::to_string(seqs) + " sequences of " + std::to_string(n) +
               " tokens (expected n_seqs + 1 prefix offsets from 0 to n_tokens)");
  OP_CHECK(b.max_blocks_per_seq >= 0 &&
               b.block_tables.size() == static_cast<size_t>(seqs) * b.max_blocks_per_seq,
           "block_tables has " + std::to_string(b.block_tables.size()) + " entries for " +
               std::to_string(seqs) + " sequences x " + std::to_string(b.max_blocks_per_seq));
  for (int32_t s = 0; s < seqs; ++s)
    OP_CHECK(b.query_start[s] <= b.query_start[s + 1],
             "query_start decreases at sequence " + std::to_string(s));
  for (int32_t s = 0; s < seqs; ++s) {
    const int64_t ctx = b.context_len[s];
    OP_CHECK(ctx >= 0 && ctx <= static_cast<int64_t>(b.max_blocks_per_seq) * b.block_size,
             "sequence " + std::to_string(s) + " context_len " + std::to_string(ctx) +
                 " does not fit " + std::to_string(b.max_blocks_per_seq) + " blocks of " +
                 std::to_string(b.block_size));
    for (int32_t t = b.query_start[s]; t < b.query_start[s + 1]; ++t)
      OP_CHECK(b.positions[t] >= 0 && b.positions[t] < ctx,
               "token " + std::to_string(t) + " at position " + std::to_string(b.positions[t]) +
                   " outside its sequence's context of " + std::to_string(ctx));
  }
  for (int32_t r : b.logit_rows)
    OP_CHECK(r >= 0 && static_cast<size_t>(r) < n,
             "logit row " + std::to_string(r) + " outside " + std::to_string(n) + " tokens");
  OP_CHECK(b.full_logits.empty() || b.full_logits.size() == b.logit_rows.size(),
           "full_logits has " + std::to_string(b.full_logits.size()) + " flags for " +
               std::to_string(b.logit_rows.size()) + " logit rows");
  OP_CHECK(b.sampling.empty() || b.sampling.size() == b.logit_rows.size(),
           "sampling has " + std::to_string(b.sampling.size()) + " entries for " +
               std::to_string(b.logit_rows.size()) + " logit rows");
}

}  // namespace tpinfer
