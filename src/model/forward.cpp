// The Llama forward pass as a short, explicit sequence of backend ops, ending
// at this rank's vocab slice of the logits. Two all-reduces per layer: after
// the row-parallel o_proj and down_proj.
#include <cmath>

#include "base/error.hpp"
#include "model/model.hpp"

namespace tpinfer {

Tensor forward(Model& m, Backend& b, const BatchLayout& batch) {
  const ModelConfig& c = m.config;
  const ShardLayout& s = m.shard;
  Workspace& w = m.ws;
  const int64_t n = batch.num_tokens();
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  TPINFER_ASSERT(n >= 1 && n <= w.max_tokens && n_out <= w.max_seqs,
                 "forward: step of " + std::to_string(n) + " tokens / " + std::to_string(n_out) +
                     " logit rows exceeds the workspace (" + std::to_string(w.max_tokens) + " / " +
                     std::to_string(w.max_seqs) + ")");
  const float eps = static_cast<float>(c.rms_norm_eps);
  const AttentionShape a{s.q_heads, s.kv_heads, c.head_dim,
                         1.0f / std::sqrt(static_cast<float>(c.head_dim))};

  Tensor x = w.residual.first_rows(n), normed = w.normed.first_rows(n), qkv = w.qkv.first_rows(n),
         attn = w.attn.first_rows(n), proj = w.proj.first_rows(n),
         gate_up = w.gate_up.first_rows(n), act = w.act.first_rows(n),
         mlp_out = w.mlp_out.first_rows(n);

  b.embed(m.embed, s.vocab_offset, x);
  if (s.tp_size > 1) b.all_reduce_sum(x);  // vocab-parallel embedding
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerWeights& L = m.layers[l];
    if (l == 0)
      b.rmsnorm(x, L.input_norm, eps, normed);
    else
      b.add_rmsnorm(x, mlp_out, L.input_norm, eps, normed);
    b.linear(normed, L.qkv, L.qkv_bias.data ? &L.qkv_bias : nullptr, qkv);
    b.rope_write_kv(qkv, m.inv_freq, a, m.cache.k[l], m.cache.v[l]);
    b.attention(qkv, m.cache.k[l], m.cache.v[l], a, attn);
    b.linear(attn, L.o_proj, nullptr, proj);
    if (s.tp_size > 1) b.all_reduce_sum(proj);
    b.add_rmsnorm(x, proj, L.post_norm, eps, normed);
    b.linear(normed, L.gate_up, nullptr, gate_up);
    b.silu_mul(gate_up, act);
    b.linear(act, L.down, nullptr, mlp_out);
    if (s.tp_size > 1) b.all_reduce_sum(mlp_out);
  }
  b.add_rmsnorm(x, mlp_out, m.final_norm, eps, normed);
  Tensor logits = w.logits_local.first_rows(n_out);
  if (n_out > 0) {
    Tensor last = w.last_hidden.first_rows(n_out);
    b.gather_rows(normed, last);
    b.linear(last, m.lm_head, nullptr, logits);  // vocab-parallel LM head
  }
  return logits;
}

}  // namespace tpinfer
