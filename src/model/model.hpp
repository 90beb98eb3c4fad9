#pragma once
// The Llama-family model on one TP rank: its weight shards, KV cache and
// workspace on a backend, and the forward pass over one engine step.
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/backend.hpp"
#include "weights/model_config.hpp"
#include "weights/sharding.hpp"

namespace tpinfer {

struct LayerWeights {
  Tensor input_norm;  // [h]
  Tensor qkv;         // [(q_heads + 2 kv_heads) * d, h]: fused q|k|v shards
  Tensor qkv_bias;    // [(q_heads + 2 kv_heads) * d] or empty (no data)
  Tensor o_proj;      // [h, q_heads * d]: row-parallel
  Tensor post_norm;   // [h]
  Tensor gate_up;     // [2 * i_local, h]: fused gate|up shards
  Tensor down;        // [h, i_local]: row-parallel
};

struct KvCache {
  int block_size = 0;
  int num_blocks = 0;
  std::vector<Tensor> k, v;  // per layer [num_blocks, block_size, kv_heads, d]
};

struct Workspace {
  int64_t max_tokens = 0, max_seqs = 0;
  Tensor residual, normed, qkv, attn, proj, gate_up, act, mlp_out;  // [max_tokens, ...]
  Tensor last_hidden;                                               // [max_seqs, h]
  Tensor logits_local;                                              // [max_seqs, vocab_per_rank]
  Tensor logits_all;    // [tp, max_seqs, vocab_per_rank]
  Tensor argmax_local;  // [max_seqs, 2] fp32 (value, token)
  Tensor argmax_all;    // [tp, max_seqs, 2] fp32
  Tensor sampled;       // [max_seqs, 2] fp32 (token, logprob) from sample_rows
  Tensor logprobs;      // [max_seqs, 1 + kMaxTopLogprobs, 2] fp32 from logprob_rows
  std::vector<float> host_logits, host_argmax, host_sampled, host_logprobs;
};

struct Model {
  ModelConfig config;
  ShardLayout shard;
  Tensor embed;       // [vocab_per_rank, h], zero-padded rows past the vocab
  Tensor lm_head;     // same tensor as embed when tied
  Tensor final_norm;  // [h]
  Tensor inv_freq;    // [d/2] fp32 RoPE frequencies (with rope_scaling applied)
  std::vector<LayerWeights> layers;
  KvCache cache;
  Workspace ws;
};

// Writes one tensor's hyperslab into `dst` (a view of the destination rows on
// the backend). The caller decides where values come from: a weight file's
// shards (upload_from), or seeded random values made by the backend itself.
// The model does not know files.
using ShardFiller = std::function<void(Backend& backend, const Tensor& dst, const TensorShard&)>;
// Reads one tensor's hyperslab as host fp32.
using ShardReader = std::function<std::vector<float>(const TensorShard&)>;
ShardFiller upload_from(ShardReader read);

// Loads rank tp_rank's shards of every tensor onto the backend.
Model load_model(Backend& backend, const ModelConfig& config, int tp_rank, int tp_size,
                 const ShardFiller& fill);
inline Model load_model(Backend& backend, const ModelConfig& config, int tp_rank, int tp_size,
                        const ShardReader& read) {
  return load_model(backend, config, tp_rank, tp_size, upload_from(read));
}
// Sizes of what the engine needs to plan memory.
int64_t kv_bytes_per_block(const ModelConfig& c, const ShardLayout& s, int block_size, DType dtype);
// The cache in the backend's compute dtype, or in `dtype` (fp8_e4m3: half or a
// quarter of the bytes, values rounded to 3 mantissa bits; base/fp8.hpp).
void allocate_kv_cache(Model& m, Backend& backend, int num_blocks, int block_size);
void allocate_kv_cache(Model& m, Backend& backend, int num_blocks, int block_size, DType dtype);
void allocate_workspace(Model& m, Backend& backend, int64_t max_tokens, int64_t max_seqs);

// RoPE inverse frequencies [d/2], with llama3 or linear scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c);

// The forward over a flattened step (after backend.set_batch(batch)), ending
// at this rank's vocab slice of the logits of batch.logit_rows:
// [logit rows, vocab_per_rank] in the workspace.
Tensor forward(Model& m, Backend& backend, const BatchLayout& batch);
// One engine step: the forward, then the token of every logit row
// (model/select_tokens.cpp): the greedy token, or for the rows
// batch.needs_full() marks, the one drawn under batch.sampling where the logits
// are. Identical on every TP rank.
void step_tokens(Model& m, Backend& backend, const BatchLayout& batch, StepTokens& out);
// The forward with every logit row whole on the host (config.vocab_size floats
// a row): for `tpinfer logits` and tests.
void forward(Model& m, Backend& backend, const BatchLayout& batch, std::vector<float>& logits);

}  // namespace tpinfer
