#pragma once
// Tensor-parallel sharding rules (Megatron style): which part of each tensor a
// TP rank holds. Column-parallel (split output dim 0): q/k/v, gate/up and their
// biases. Row-parallel (split input dim 1): o_proj, down_proj. Vocab-parallel
// (split dim 0 into ceil(V/tp) rows, last slice shorter): embed_tokens, lm_head.
// Replicated: norms. KV heads split when kv_heads % tp == 0, replicated when
// tp % kv_heads == 0.
#include <cstdint>
#include <string>
#include <vector>

#include "weights/model_config.hpp"

namespace tpinfer {

struct TensorSpec {
  std::string name;            // Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // full, unsharded
};

// Every tensor a model file of this config holds, in a stable order.
std::vector<TensorSpec> expected_tensors(const ModelConfig& c);

// A rank's hyperslab of one tensor.
struct TensorShard {
  std::string name;
  std::vector<int64_t> full_shape;
  std::vector<int64_t> offset;
  std::vector<int64_t> count;
  int64_t numel() const;
};

// Per-rank sizes after sharding.
struct ShardLayout {
  int tp_rank = 0;
  int tp_size = 1;
  int64_t q_heads = 0;         // local attention heads
  int64_t kv_heads = 0;        // local KV heads (split or one replicated head)
  int64_t first_kv_head = 0;   // global index of the first local KV head
  int64_t intermediate = 0;    // local MLP width
  int64_t vocab_per_rank = 0;  // ceil(V / tp): slice stride; the last slice may be shorter
  int64_t vocab_offset = 0;    // first vocab row of this rank
  int64_t vocab_local = 0;     // rows this rank really holds
};

// Throws ModelError naming the rule when tp cannot shard this config.
void check_tp_size(const ModelConfig& c, int tp_size);
ShardLayout shard_layout(const ModelConfig& c, int tp_rank, int tp_size);
// The hyperslab of tensor `spec` that rank tp_rank of tp_size reads.
TensorShard shard_of(const ModelConfig& c, const TensorSpec& spec, int tp_rank, int tp_size);

}  // namespace tpinfer
