// From the logits to one token per logit row, on every TP rank alike. Greedy
// rows need only their argmax, which each rank finds in its vocab slice where
// the logits are; the ranks' bests are merged on the host. Rows that sample or
// want logprobs are drawn on the backend from the all-gathered rows, so only
// (token, logprob) pairs cross to the host, never a vocab-wide row.
#include <algorithm>
#include <limits>

#include "base/error.hpp"
#include "model/model.hpp"

namespace tpinfer {
namespace {

// Where the greedy candidates are: this rank's [n_out, 2] at TP 1, else the
// all-gathered [tp, n_out, 2].
Tensor candidates_of(const Model& m, int64_t n_out) {
  if (m.shard.tp_size == 1) return m.ws.argmax_local.first_rows(n_out);
  return Tensor{m.ws.argmax_all.data, DType::f32, {m.shard.tp_size, n_out, 2}};
}

// Each rank's (best value, token) of its slice, all-gathered into
// candidates_of. Runs inside the step recording.
void greedy_candidates(Model& m, Backend& b, const Tensor& logits) {
  const ShardLayout& s = m.shard;
  Workspace& w = m.ws;
  const int64_t n_out = logits.rows();
  Tensor best_local = w.argmax_local.first_rows(n_out);
  if (s.vocab_local > 0) {
    b.argmax_rows(logits, s.vocab_local, s.vocab_offset, best_local);
  } else {  // a tiny vocab can leave the last rank no rows
    std::vector<float> none(static_cast<size_t>(2 * n_out));
    for (int64_t j = 0; j < n_out; ++j) none[2 * j] = -std::numeric_limits<float>::infinity();
    b.upload(best_local, none.data());
  }
  if (s.tp_size > 1) {
    Tensor all = candidates_of(m, n_out);
    b.all_gather(best_local, all);
  }
}

// The best of the ranks' bests (ranks hold ascending vocab slices, so the first
// of equals is the lowest id, the sampler's greedy rule).
void merge_greedy(Model& m, Backend& b, const Tensor& candidates, StepTokens& out) {
  const int64_t tp = m.shard.tp_size, n_out = candidates.numel() / (2 * tp);
  std::vector<float>& host = m.ws.host_argmax;
  b.download(candidates, host.data());
  for (int64_t j = 0; j < n_out; ++j) {
    float best = -std::numeric_limits<float>::infinity();
    int32_t token = 0;  // all -inf or NaN: token 0, as the host sampler decides
    for (int64_t r = 0; r < tp; ++r) {
      const float v = host[(r * n_out + j) * 2];
      if (v > best) {
        best = v;
        token = static_cast<int32_t>(host[(r * n_out + j) * 2 + 1]);
      }
    }
    out.drawn[static_cast<size_t>(j)] = {token, 0.0f};
  }
}

// Every rank's vocab slice of the logit rows: [tp, n_out, vocab_per_rank].
Tensor all_vocab(Model& m, Backend& b, const Tensor& logits) {
  const ShardLayout& s = m.shard;
  if (s.tp_size == 1) return logits;
  Tensor all{
      m.ws.logits_all.data, m.ws.logits_all.dtype, {s.tp_size, logits.rows(), s.vocab_per_rank}};
  b.all_gather(logits, all);
  return all;
}

// Draws the rows that sample or want logprobs where the logits are. Runs after
// the recording: sample_rows uploads its parameters.
void draw_rows(Model& m, Backend& b, const BatchLayout& batch, const Tensor& all, StepTokens& out) {
  std::vector<int32_t> wanted;
  std::vector<RowSampling> params;
  for (size_t j = 0; j < batch.logit_rows.size(); ++j)
    if (batch.needs_full(j) && batch.sampling[j].target < 0) {
      wanted.push_back(static_cast<int32_t>(j));
      params.push_back(batch.sampling[j]);
    }
  if (wanted.empty()) return;
  Tensor drawn = m.ws.sampled.first_rows(static_cast<int64_t>(wanted.size()));
  b.sample_rows(all, m.config.vocab_size, wanted, params, drawn);
  std::vector<float>& host = m.ws.host_sampled;
  b.download(drawn, host.data());
  for (size_t k = 0; k < wanted.size(); ++k) {
    // sample_token's error for such a row (its rule, its message).
    if (host[2 * k] < 0.0f)
      throw InternalError("sampler: logits have no finite maximum (NaN or overflow in the model?)");
    out.drawn[static_cast<size_t>(wanted[k])] = {static_cast<int32_t>(host[2 * k]),
                                                 host[2 * k + 1]};
  }
}

// Scoring rows' target logprobs and the top_logprobs of the rows that ask,
// from the same logits as the drawn tokens.
void logprob_rows(Model& m, Backend& b, const BatchLayout& batch, const Tensor& all,
                  StepTokens& out) {
  std::vector<int32_t> rows, targets;
  int k = 0;
  for (size_t j = 0; j < batch.logit_rows.size(); ++j) {
    const RowSampling& s = batch.sampling[j];
    if (s.target < 0 && s.top_logprobs == 0) continue;
    rows.push_back(static_cast<int32_t>(j));
    targets.push_back(s.target);
    k = std::max(k, s.top_logprobs);
  }
  if (rows.empty()) return;
  const int64_t stride = 2 * (1 + k);
  Tensor got{m.ws.logprobs.data, DType::f32, {static_cast<int64_t>(rows.size()), 1 + k, 2}};
  b.logprob_rows(all, m.config.vocab_size, rows, targets, k, got);
  std::vector<float>& host = m.ws.host_logprobs;
  b.download(got, host.data());
  out.top.resize(batch.logit_rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* r = host.data() + static_cast<int64_t>(i) * stride;
    const RowSampling& s = batch.sampling[static_cast<size_t>(rows[i])];
    if (s.target >= 0) out.drawn[static_cast<size_t>(rows[i])] = {s.target, r[1]};
    auto& top = out.top[static_cast<size_t>(rows[i])];
    for (int t = 0; t < s.top_logprobs && r[2 + 2 * t] >= 0.0f; ++t)
      top.push_back({static_cast<int32_t>(r[2 + 2 * t]), r[3 + 2 * t]});
  }
}

// set_batch, then the forward and the greedy candidates as one step
// recording where the backend keeps them (a rank with no vocab rows uploads,
// so it does not): this rank's logits and the candidates, on the device.
std::pair<Tensor, Tensor> recorded_forward(Model& m, Backend& b, const BatchLayout& batch) {
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  b.set_batch(batch);
  const bool recordable = n_out > 0 && m.shard.vocab_local > 0;
  Tensor logits = m.ws.logits_local.first_rows(n_out);
  if (!(recordable && b.replay_step())) {
    if (recordable) b.record_begin();
    logits = forward(m, b, batch);
    if (n_out > 0) greedy_candidates(m, b, logits);
    if (recordable) b.record_end();
  }
  return {logits, candidates_of(m, n_out)};
}

}  // namespace

void step_tokens(Model& m, Backend& b, const BatchLayout& batch, StepTokens& out) {
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  TPINFER_ASSERT(batch.sampling.size() == batch.logit_rows.size(),
                 "step_tokens: a batch needs one RowSampling per logit row");
  out.drawn.assign(static_cast<size_t>(n_out), {});
  out.top.clear();
  const auto [logits, candidates] = recorded_forward(m, b, batch);
  if (n_out == 0) return;
  merge_greedy(m, b, candidates, out);
  bool whole_rows = false;  // some row needs the whole vocab: gather it once
  for (size_t j = 0; j < batch.logit_rows.size(); ++j) {
    const RowSampling& s = batch.sampling[j];
    whole_rows = whole_rows || batch.needs_full(j) || s.target >= 0 || s.top_logprobs > 0;
  }
  if (!whole_rows) return;
  const Tensor all = all_vocab(m, b, logits);
  draw_rows(m, b, batch, all, out);
  logprob_rows(m, b, batch, all, out);
}

void forward(Model& m, Backend& b, const BatchLayout& batch, std::vector<float>& logits) {
  const ShardLayout& s = m.shard;
  const int64_t vocab = m.config.vocab_size, vpr = s.vocab_per_rank;
  const int64_t n_out = static_cast<int64_t>(batch.logit_rows.size());
  // The same recorded ops as step_tokens (a recording is found by the step's
  // shape, so both must record the same sequence).
  const Tensor local = recorded_forward(m, b, batch).first;
  logits.assign(static_cast<size_t>(n_out * vocab), 0.0f);
  if (n_out == 0) return;
  const Tensor all = all_vocab(m, b, local);
  std::vector<float>& host = m.ws.host_logits;
  b.download(all, host.data());
  for (int64_t r = 0; r < s.tp_size; ++r) {
    const int64_t v0 = r * vpr;
    const int64_t cols = std::max<int64_t>(0, std::min(vpr, vocab - v0));
    for (int64_t j = 0; j < n_out; ++j)
      std::copy_n(host.data() + (r * n_out + j) * vpr, cols, logits.data() + j * vocab + v0);
  }
}

}  // namespace tpinfer
