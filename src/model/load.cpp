#include <cmath>
#include <numbers>

#include "base/error.hpp"
#include "model/model.hpp"

namespace tpinfer {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(half);
  const auto& rs = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
    if (rs.type == "linear") {
      f /= rs.factor;
    } else if (rs.type == "llama3") {
      // Llama 3.1: keep high frequencies, divide low ones by `factor`, blend between.
      const double old_len = static_cast<double>(rs.original_max_position_embeddings);
      const double low_wavelen = old_len / rs.low_freq_factor;
      const double high_wavelen = old_len / rs.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

ShardFiller upload_from(ShardReader read) {
  return [read = std::move(read)](Backend& b, const Tensor& dst, const TensorShard& shard) {
    const std::vector<float> values = read(shard);
    if (static_cast<int64_t>(values.size()) != shard.numel() || dst.numel() != shard.numel())
      throw ModelError("tensor " + shard.name + ": read " + std::to_string(values.size()) +
                       " values for a shard of " + std::to_string(shard.numel()));
    b.upload(dst, values.data());
  };
}

Model load_model(Backend& b, const ModelConfig& c, int tp_rank, int tp_size,
                 const ShardFiller& fill) {
  Model m;
  m.config = c;
  m.shard = shard_layout(c, tp_rank, tp_size);
  const ShardLayout& s = m.shard;
  const DType dt = b.compute_dtype();
  const int64_t h = c.hidden_size, d = c.head_dim;
  // A weight on the backend made of row blocks: one tensor's shard, or several
  // shards stacked (fused q|k|v and gate|up). Blocks are filled in place.
  auto weight = [&](std::vector<int64_t> shape, std::initializer_list<TensorSpec> parts) {
    Tensor t = b.alloc(shape, dt);
    int64_t row = 0;
    for (const TensorSpec& spec : parts) {
      const TensorShard shard = shard_of(c, spec, tp_rank, tp_size);
      fill(b, t.rows(row, shard.count[0]), shard);
      row += shard.count[0];
    }
    return t;
  };

  // Vocab slices have vocab_per_rank rows so that all ranks' logits have one
  // shape; the last rank's rows past the vocab are never looked up, and their
  // logits are dropped in forward().
  m.embed = weight({s.vocab_per_rank, h}, {{"model.embed_tokens.weight", {c.vocab_size, h}}});
  m.lm_head = c.tie_word_embeddings
                  ? m.embed
                  : weight({s.vocab_per_rank, h}, {{"lm_head.weight", {c.vocab_size, h}}});
  m.final_norm = weight({h}, {{"model.norm.weight", {h}}});
  m.inv_freq = b.alloc({d / 2}, DType::f32);
  b.upload(m.inv_freq, rope_inv_freq(c).data());

  const int64_t qkv_rows = (s.q_heads + 2 * s.kv_heads) * d;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.input_norm = weight({h}, {{p + "input_layernorm.weight", {h}}});
    L.qkv = weight({qkv_rows, h}, {{p + "self_attn.q_proj.weight", {c.num_heads * d, h}},
                                   {p + "self_attn.k_proj.weight", {c.num_kv_heads * d, h}},
                                   {p + "self_attn.v_proj.weight", {c.num_kv_heads * d, h}}});
    if (c.attention_bias)
      L.qkv_bias = weight({qkv_rows}, {{p + "self_attn.q_proj.bias", {c.num_heads * d}},
                                       {p + "self_attn.k_proj.bias", {c.num_kv_heads * d}},
                                       {p + "self_attn.v_proj.bias", {c.num_kv_heads * d}}});
    L.o_proj = weight({h, s.q_heads * d}, {{p + "self_attn.o_proj.weight", {h, c.num_heads * d}}});
    L.post_norm = weight({h}, {{p + "post_attention_layernorm.weight", {h}}});
    L.gate_up =
        weight({2 * s.intermediate, h}, {{p + "mlp.gate_proj.weight", {c.intermediate_size, h}},
                                         {p + "mlp.up_proj.weight", {c.intermediate_size, h}}});
    L.down = weight({h, s.intermediate}, {{p + "mlp.down_proj.weight", {h, c.intermediate_size}}});
    m.layers.push_back(std::move(L));
  }
  return m;
}

int64_t kv_bytes_per_block(const ModelConfig& c, const ShardLayout& s, int block_size, DType dt) {
  return 2 * c.num_layers * block_size * s.kv_heads * c.head_dim * dtype_bytes(dt);
}

void allocate_kv_cache(Model& m, Backend& b, int num_blocks, int block_size) {
  allocate_kv_cache(m, b, num_blocks, block_size, b.compute_dtype());
}

void allocate_kv_cache(Model& m, Backend& b, int num_blocks, int block_size, DType dtype) {
  if (num_blocks < 1) throw UsageError("KV cache needs at least one block");
  m.cache.block_size = block_size;
  m.cache.num_blocks = num_blocks;
  m.cache.k.clear();
  m.cache.v.clear();
  const std::vector<int64_t> shape{num_blocks, block_size, m.shard.kv_heads, m.config.head_dim};
  for (int64_t l = 0; l < m.config.num_layers; ++l) {
    m.cache.k.push_back(b.alloc(shape, dtype));
    m.cache.v.push_back(b.alloc(shape, dtype));
  }
}

void allocate_workspace(Model& m, Backend& b, int64_t T, int64_t S) {
  const auto& c = m.config;
  const auto& s = m.shard;
  const DType dt = b.compute_dtype();
  const int64_t h = c.hidden_size, d = c.head_dim;
  Workspace& w = m.ws;
  w.max_tokens = T;
  w.max_seqs = S;
  w.residual = b.alloc({T, h}, dt);
  w.normed = b.alloc({T, h}, dt);
  w.qkv = b.alloc({T, (s.q_heads + 2 * s.kv_heads) * d}, dt);
  w.attn = b.alloc({T, s.q_heads * d}, dt);
  w.proj = b.alloc({T, h}, dt);
  w.gate_up = b.alloc({T, 2 * s.intermediate}, dt);
  w.act = b.alloc({T, s.intermediate}, dt);
  w.mlp_out = b.alloc({T, h}, dt);
  w.last_hidden = b.alloc({S, h}, dt);
  w.logits_local = b.alloc({S, s.vocab_per_rank}, b.logits_dtype());
  w.logits_all = b.alloc({s.tp_size, S, s.vocab_per_rank}, b.logits_dtype());
  w.argmax_local = b.alloc({S, 2}, DType::f32);
  w.argmax_all = b.alloc({s.tp_size, S, 2}, DType::f32);
  w.sampled = b.alloc({S, 2}, DType::f32);
  w.host_logits.resize(static_cast<size_t>(s.tp_size * S * s.vocab_per_rank));
  w.host_argmax.resize(static_cast<size_t>(s.tp_size * S * 2));
  w.host_sampled.resize(static_cast<size_t>(S * 2));
  w.logprobs = b.alloc({S, 1 + kMaxTopLogprobs, 2}, DType::f32);
  w.host_logprobs.resize(static_cast<size_t>(S * (1 + kMaxTopLogprobs) * 2));
}

}  // namespace tpinfer
