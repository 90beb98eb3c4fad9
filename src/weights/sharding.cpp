#include "weights/sharding.hpp"

#include "base/error.hpp"

namespace tpinfer {

int64_t TensorShard::numel() const {
  int64_t n = 1;
  for (auto v : count) n *= v;
  return n;
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  const int64_t h = c.hidden_size, d = c.head_dim;
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {h}});
    t.push_back({p + "self_attn.q_proj.weight", {c.num_heads * d, h}});
    t.push_back({p + "self_attn.k_proj.weight", {c.num_kv_heads * d, h}});
    t.push_back({p + "self_attn.v_proj.weight", {c.num_kv_heads * d, h}});
    if (c.attention_bias) {
      t.push_back({p + "self_attn.q_proj.bias", {c.num_heads * d}});
      t.push_back({p + "self_attn.k_proj.bias", {c.num_kv_heads * d}});
      t.push_back({p + "self_attn.v_proj.bias", {c.num_kv_heads * d}});
    }
    t.push_back({p + "self_attn.o_proj.weight", {h, c.num_heads * d}});
    t.push_back({p + "post_attention_layernorm.weight", {h}});
    t.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, h}});
    t.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, h}});
    t.push_back({p + "mlp.down_proj.weight", {h, c.intermediate_size}});
  }
  t.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {c.vocab_size, h}});
  return t;
}

void check_tp_size(const ModelConfig& c, int tp) {
  const std::string tps = std::to_string(tp);
  if (tp < 1) throw ModelError("TP size must be >= 1, got " + tps);
  if (c.num_heads % tp != 0)
    throw ModelError("TP size " + tps + " does not divide num_attention_heads " +
                     std::to_string(c.num_heads) + " (rule: heads % tp == 0)");
  if (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0)
    throw ModelError("TP size " + tps + " and num_key_value_heads " +
                     std::to_string(c.num_kv_heads) +
                     " do not fit (rule: kv_heads % tp == 0 to split them, or tp % kv_heads == 0 "
                     "to replicate them)");
  if (c.intermediate_size % tp != 0)
    throw ModelError("TP size " + tps + " does not divide intermediate_size " +
                     std::to_string(c.intermediate_size) + " (rule: intermediate % tp == 0)");
  if (c.vocab_size < tp)
    throw ModelError("TP size " + tps + " exceeds vocab_size " + std::to_string(c.vocab_size));
}

ShardLayout shard_layout(const ModelConfig& c, int r, int tp) {
  check_tp_size(c, tp);
  ShardLayout s;
  s.tp_rank = r;
  s.tp_size = tp;
  s.q_heads = c.num_heads / tp;
  if (c.num_kv_heads % tp == 0) {
    s.kv_heads = c.num_kv_heads / tp;
    s.first_kv_head = r * s.kv_heads;
  } else {  // tp % kv_heads == 0: every group of tp/kv ranks shares one KV head
    s.kv_heads = 1;
    s.first_kv_head = r / (tp / c.num_kv_heads);
  }
  s.intermediate = c.intermediate_size / tp;
  s.vocab_per_rank = (c.vocab_size + tp - 1) / tp;
  s.vocab_offset = std::min<int64_t>(c.vocab_size, r * s.vocab_per_rank);
  s.vocab_local =
      std::min<int64_t>(c.vocab_size, s.vocab_offset + s.vocab_per_rank) - s.vocab_offset;
  return s;
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

TensorShard shard_of(const ModelConfig& c, const TensorSpec& spec, int r, int tp) {
  const ShardLayout s = shard_layout(c, r, tp);
  TensorShard t{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0), spec.shape};
  const auto& n = spec.name;
  auto split_dim = [&](size_t dim, int64_t offset, int64_t count) {
    t.offset[dim] = offset;
    t.count[dim] = count;
  };
  const int64_t d = c.head_dim;
  if (n == "model.embed_tokens.weight" || n == "lm_head.weight") {
    split_dim(0, s.vocab_offset, s.vocab_local);
  } else if (ends_with(n, "q_proj.weight") || ends_with(n, "q_proj.bias")) {
    split_dim(0, r * s.q_heads * d, s.q_heads * d);
  } else if (ends_with(n, "k_proj.weight") || ends_with(n, "k_proj.bias") ||
             ends_with(n, "v_proj.weight") || ends_with(n, "v_proj.bias")) {
    split_dim(0, s.first_kv_head * d, s.kv_heads * d);
  } else if (ends_with(n, "o_proj.weight")) {
    split_dim(1, r * s.q_heads * d, s.q_heads * d);
  } else if (ends_with(n, "gate_proj.weight") || ends_with(n, "up_proj.weight")) {
    split_dim(0, r * s.intermediate, s.intermediate);
  } else if (ends_with(n, "down_proj.weight")) {
    split_dim(1, r * s.intermediate, s.intermediate);
  }  // norms: replicated
  return t;
}

}  // namespace tpinfer
