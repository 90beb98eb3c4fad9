// The Llama forward pass as a short, explicit sequence of backend ops.
// Two all-reduces per layer: after the row-parallel o_proj and down_proj.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "base/error.hpp"
#include "model/model.hpp"

namespace tpinfer {

void forward(Model& m, Backend& b, const BatchLayout& batch, StepLogits& out) {
  const ModelConfig& c = m.config;
  const ShardLayout& s = m.shard;
  Workspace& w = m.ws;
  const int64_t n = batch.num_tokens();
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  if (n < 1 || n > w.max_tokens || n_out > w.max_seqs)
    throw Error("forward: step of " + std::to_string(n) + " tokens / " + std::to_string(n_out) +
                    " logit rows exceeds the workspace (" + std::to_string(w.max_tokens) + " / " +
                    std::to_string(w.max_seqs) + ")",
                kExitOther);
  const float eps = static_cast<float>(c.rms_norm_eps);
  const AttentionShape a{s.q_heads, s.kv_heads, c.head_dim,
                         1.0f / std::sqrt(static_cast<float>(c.head_dim))};

  Tensor x = w.residual.first_rows(n), normed = w.normed.first_rows(n), qkv = w.qkv.first_rows(n),
         attn = w.attn.first_rows(n), proj = w.proj.first_rows(n),
         gate_up = w.gate_up.first_rows(n), act = w.act.first_rows(n),
         mlp_out = w.mlp_out.first_rows(n);

  b.set_batch(batch);
  out.greedy.assign(static_cast<size_t>(n_out), 0);
  out.full.clear();
  out.sampled.clear();
  out.sampled_logprob.clear();
  Tensor last = w.last_hidden.first_rows(n_out);
  Tensor local = w.logits_local.first_rows(n_out);
  Tensor best_local = w.argmax_local.first_rows(n_out);
  Tensor best_all{w.argmax_all.data, DType::f32, {s.tp_size, n_out, 2}};
  if (s.tp_size == 1) best_all = best_local;
  // Everything up to the greedy tokens' download runs as one recording where
  // the backend keeps them (a rank with no vocab rows uploads, so it does not).
  const bool recordable = n_out > 0 && s.vocab_local > 0;
  if (recordable && b.replay_step()) {
    // The recorded ops ran.
  } else {
    if (recordable) b.record_begin();
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
    if (n_out > 0) {
      b.gather_rows(normed, last);
      b.linear(last, m.lm_head, nullptr, local);  // vocab-parallel LM head
      // Greedy tokens: each rank's best of its slice, then the best of the ranks'
      // (ranks hold ascending vocab slices, so the first of equals is the lowest id).
      if (s.vocab_local > 0) {
        b.argmax_rows(local, s.vocab_local, s.vocab_offset, best_local);
      } else {  // a tiny vocab can leave the last rank no rows
        std::vector<float> none(static_cast<size_t>(2 * n_out));
        for (int64_t j = 0; j < n_out; ++j) none[2 * j] = -std::numeric_limits<float>::infinity();
        b.upload(best_local, none.data());
      }
      if (s.tp_size > 1) b.all_gather(best_local, best_all);
    }
    if (recordable) b.record_end();
  }
  if (n_out == 0) return;
  b.download(best_all, w.host_argmax.data());
  for (int64_t j = 0; j < n_out; ++j) {
    float best = -std::numeric_limits<float>::infinity();
    int32_t token = 0;  // all -inf or NaN: token 0, as the host sampler decides
    for (int64_t r = 0; r < s.tp_size; ++r) {
      const float v = w.host_argmax[(r * n_out + j) * 2];
      if (v > best) {
        best = v;
        token = static_cast<int32_t>(w.host_argmax[(r * n_out + j) * 2 + 1]);
      }
    }
    out.greedy[j] = token;
  }

  // Whole rows, only when some row samples or wants logprobs. Every rank gets
  // every slice, so each samples the same token from the same logits. This
  // runs after the recording: sample_rows uploads its parameters.
  std::vector<int32_t> wanted;
  for (int64_t j = 0; j < n_out; ++j)
    if (batch.needs_full(static_cast<size_t>(j))) wanted.push_back(static_cast<int32_t>(j));
  if (wanted.empty()) return;
  const int64_t vpr = s.vocab_per_rank;
  Tensor all{w.logits_all.data, w.logits_all.dtype, {s.tp_size, n_out, vpr}};
  if (s.tp_size > 1)
    b.all_gather(local, all);
  else
    all = local;
  if (!batch.sampling.empty()) {
    // Drawn where the logits are: only (token, logprob) pairs cross to the host.
    std::vector<RowSampling> params;
    params.reserve(wanted.size());
    for (int32_t j : wanted) params.push_back(batch.sampling[static_cast<size_t>(j)]);
    Tensor drawn = w.sampled.first_rows(static_cast<int64_t>(wanted.size()));
    b.sample_rows(all, c.vocab_size, wanted, params, drawn);
    b.download(drawn, w.host_sampled.data());
    for (size_t k = 0; k < wanted.size(); ++k) {
      const float token = w.host_sampled[2 * k];
      // sample_token's error for such a row (its rule, its message).
      if (token < 0.0f)
        throw InternalError(
            "sampler: logits have no finite maximum (NaN or overflow in the "
            "model?)");
      out.sampled.push_back(static_cast<int32_t>(token));
      out.sampled_logprob.push_back(w.host_sampled[2 * k + 1]);
    }
    return;
  }
  b.download(all, w.host_logits.data());
  out.full.resize(wanted.size() * static_cast<size_t>(c.vocab_size));
  for (int64_t r = 0; r < s.tp_size; ++r) {
    const int64_t v0 = r * vpr;
    const int64_t cols = std::max<int64_t>(0, std::min(vpr, c.vocab_size - v0));
    for (size_t k = 0; k < wanted.size(); ++k)
      std::copy_n(w.host_logits.data() + (r * n_out + wanted[k]) * vpr, cols,
                  out.full.data() + static_cast<int64_t>(k) * c.vocab_size + v0);
  }
}

void forward(Model& m, Backend& b, const BatchLayout& batch, std::vector<float>& logits) {
  if (!batch.full_logits.empty() || !batch.sampling.empty())
    throw Error("forward: whole logits asked for a batch that marks rows greedy or sampled",
                kExitOther);
  StepLogits out;
  forward(m, b, batch, out);
  logits = std::move(out.full);
}

}  // namespace tpinfer
