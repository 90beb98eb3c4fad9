#pragma once
// One engine step's work, flattened: what the model's forward pass consumes.
#include <cstdint>
#include <vector>

#include "base/request.hpp"

namespace tpinfer {

// How one logit row becomes a token: its request's sampling settings and the
// position the token will take (the Philox counter). See sampler.hpp.
struct RowSampling {
  float temperature = 0.0f;  // <= 0: greedy
  float top_p = 1.0f;        // 1: off
  int64_t top_k = 0;         // 0: off
  uint64_t seed = 0;
  int64_t position = 0;
  bool logprobs = false;
  int top_logprobs = 0;  // the k most likely tokens too (k <= kMaxTopLogprobs)
  // >= 0: a scoring row (prompt logprobs): not sampled; the step gives this
  // token's logprob at the row.
  int32_t target = -1;
};

struct BatchLayout {
  int block_size = 16;
  // Per token (n_tokens entries): the token, its position in its sequence, and
  // the KV-cache slot (block * block_size + offset) where its K and V go.
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;
  std::vector<int32_t> slot_mapping;
  // Per sequence (n_seqs entries; tokens of one sequence are consecutive):
  std::vector<int32_t> query_start;   // n_seqs + 1 prefix offsets into the tokens
  std::vector<int32_t> context_len;   // tokens in the cache after this step (last position + 1)
  int32_t max_blocks_per_seq = 0;     // row stride of block_tables
  std::vector<int32_t> block_tables;  // n_seqs x max_blocks_per_seq, padded with -1
  // Tokens whose logits are needed, in order (one per sequence that samples).
  std::vector<int32_t> logit_rows;
  // Per logit row: 1 when the sampler needs the whole row (sampling, logprobs),
  // 0 when the greedy token is enough. Empty: every row is needed whole.
  std::vector<uint8_t> full_logits;
  // Per logit row: how its token is chosen (model/step_tokens draws the rows
  // needs_full() marks with these settings).
  std::vector<RowSampling> sampling;

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(context_len.size()); }
  bool needs_full(size_t row) const { return full_logits.empty() || full_logits[row] != 0; }
};

// What one step gives the engine, per logit row, identical on every TP rank:
// the token and its logprob (0 unless the row's RowSampling asked for it; a
// scoring row's target and its logprob), and the row's top_logprobs most
// likely tokens (empty unless asked).
struct StepTokens {
  std::vector<TokenLogprob> drawn;
  std::vector<std::vector<TokenLogprob>> top;
};

}  // namespace tpinfer
