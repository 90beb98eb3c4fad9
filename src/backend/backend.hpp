#pragma once
// The one virtual interface: a backend owns device memory, the ops of the
// Llama forward pass and the tensor-parallel collectives of its TP group.
// The model is written once against it (src/model/forward.cpp).
//
// Conventions: tensors are row-major; a linear weight is [out, in] (Hugging
// Face layout); activations are [tokens, features]. The fused QKV row of a
// token is [q heads | k heads | v heads], each head head_dim wide. The KV cache
// of a layer is [num_blocks, block_size, kv_heads, head_dim] for K and for V.
// Aliasing: rmsnorm/add_rmsnorm may write `out` over `x`; nothing else may
// write over an input (linear's out != x, all_gather's out != local,
// add_rmsnorm's out != residual). alloc throws std::bad_alloc when memory runs
// out, so a caller can retry with a smaller KV cache.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/batch.hpp"
#include "base/dtype.hpp"

namespace tpinfer {

enum class DeviceKind { cpu, cuda };

struct MemoryInfo {
  int64_t used_bytes = 0;  // allocated so far
  // Still allocatable in the backend's device arena; none where there is no
  // arena and memory is bounded only by the host (the cpu backend).
  std::optional<int64_t> arena_free_bytes;
};

struct Tensor {
  void* data = nullptr;  // device memory owned by the backend that allocated it
  DType dtype = DType::f32;
  std::vector<int64_t> shape;

  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.empty() ? 0 : numel() / shape[0]; }
  // The first `n` rows (a view; shares memory). Used for the tokens of one step.
  Tensor first_rows(int64_t n) const;
  // Rows [first, first + n) (a view; shares memory). Used to fill fused weights part by part.
  Tensor rows(int64_t first, int64_t n) const;
};

struct AttentionShape {
  int64_t q_heads = 0;   // local
  int64_t kv_heads = 0;  // local
  int64_t head_dim = 0;
  float scale = 1.0f;  // 1/sqrt(head_dim)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // dtype of activations and weights this backend computes in.
  virtual DType compute_dtype() const = 0;
  // dtype of the logits (the LM head's output): float32 where the compute
  // dtype would round them coarsely (a bf16 logit near 10 steps by 1/16).
  virtual DType logits_dtype() const { return compute_dtype(); }

  // Memory. Tensors live as long as the backend.
  virtual Tensor alloc(const std::vector<int64_t>& shape, DType dtype) = 0;
  // Where the tensors live, and how much memory is used and left. The run
  // sizes the KV cache from these.
  virtual DeviceKind device_kind() const = 0;
  virtual MemoryInfo memory_info() const = 0;
  virtual void upload(const Tensor& dst, const float* src) = 0;  // host fp32 -> dst's dtype
  // Host 16-bit values as a weight file stores them (src_dtype bf16 or f16)
  // -> dst's dtype; bits of dst's own dtype go as they are, without a float32
  // copy on the host (the model load's path for 16-bit files).
  virtual void upload_bits(const Tensor& dst, const uint16_t* src, DType src_dtype) = 0;
  virtual void download(const Tensor& src, float* dst) = 0;  // src's dtype -> host fp32

  // Step metadata, set once before each forward; the ops below read it.
  virtual void set_batch(const BatchLayout& batch) = 0;

  // Step recordings (CUDA graphs; optional). Right after set_batch, forward()
  // calls replay_step(): true means the backend has launched a recording of
  // this step's ops, made for an earlier step of the same shape, and forward
  // skips the op calls up to the step's first download. Otherwise it brackets
  // those calls with record_begin() / record_end(), and the backend may record
  // them (record_end then runs what was recorded). Nothing between the two may
  // wait for the device or read its results.
  virtual bool replay_step() { return false; }
  virtual void record_begin() {}
  virtual void record_end() {}

  // out[t] = table[token_ids[t] - vocab_offset] when that row is in this shard, else 0.
  virtual void embed(const Tensor& table, int64_t vocab_offset, Tensor& out) = 0;
  // out = x / rms(x) * w
  virtual void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) = 0;
  // residual += x; out = rmsnorm(residual) * w
  virtual void add_rmsnorm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                           Tensor& out) = 0;
  // out[n, m] = x[n, k] * w[m, k]^T (+ bias[m] when bias is not null)
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) = 0;
  // Rotates the q and k parts of qkv in place (rotate-half RoPE at batch positions,
  // inv_freq [head_dim/2] fp32) and writes k and v into the caches at slot_mapping.
  // The angle position * inv_freq[i] is rounded to fp32 before cos/sin, as
  // Hugging Face computes it; every backend must do the same.
  virtual void rope_write_kv(Tensor& qkv, const Tensor& inv_freq, const AttentionShape& a,
                             Tensor& k_cache, Tensor& v_cache) = 0;
  // Causal attention of each token's q heads over its sequence's cached K/V
  // (positions 0..position), through the block tables. out is [n, q_heads*head_dim].
  virtual void attention(const Tensor& qkv, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionShape& a, Tensor& out) = 0;
  // gate_up is [n, 2*i] = [gate | up]; out[n, i] = silu(gate) * up
  virtual void silu_mul(const Tensor& gate_up, Tensor& out) = 0;
  // out[j] = x[logit_rows[j]]
  virtual void gather_rows(const Tensor& x, Tensor& out) = 0;
  // Per row of logits [n, >= valid_cols]: out[r] = (max value, col_offset + its
  // column) over the first valid_cols columns, as fp32 [n, 2]; NaN counts as
  // -inf and ties go to the lowest column (the sampler's greedy rule).
  virtual void argmax_rows(const Tensor& logits, int64_t valid_cols, int64_t col_offset,
                           Tensor& out) = 0;
  // Draws out[i] = (token, logprob) as fp32 [rows.size(), 2] from logits row
  // rows[i] under params[i], exactly as sample_token (sampler.hpp) would from
  // that row's first `vocab` values; logprob is 0 unless asked for, and a row
  // with no finite maximum gives token -1. logits is [n, cols] (fp32, or the
  // backend's compute dtype) or, as all_gather leaves vocab-parallel logits,
  // [parts, n, cols] with part p holding columns [p * cols, (p + 1) * cols).
  // Runs outside step recordings (the cuda backend uploads params).
  virtual void sample_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                           const std::vector<RowSampling>& params, Tensor& out) = 0;

  // Per row i of logits (laid out as for sample_rows), as fp32 [rows.size(),
  // 1 + k, 2]: first (targets[i], its log-softmax), then the k most likely
  // (token, log-softmax), most likely first, ties to the lower id, all as
  // row_logprobs (sampler.hpp) computes them. (-1, 0) for a target < 0, for
  // places past the vocab, and everywhere in a row with no finite maximum.
  // Runs outside step recordings (the cuda backend uploads rows and targets).
  virtual void logprob_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                            const std::vector<int32_t>& targets, int k, Tensor& out) = 0;

  // Collectives over the TP group (no-ops when it has one rank).
  virtual void all_reduce_sum(Tensor& x) = 0;
  // out is [tp, local.shape...]: every rank's `local`, in rank order.
  virtual void all_gather(const Tensor& local, Tensor& out) = 0;
};

}  // namespace tpinfer
