#pragma once
// Token sampling from one row of logits: greedy, temperature, top-k, top-p.
// The random draw is Philox keyed by the request's seed and the token's
// position, so the same logits give the same token on any rank, in any batch.
#include <cstdint>
#include <span>

#include "base/batch.hpp"
#include "base/request.hpp"

namespace tpinfer {

struct SampledToken {
  int32_t token = 0;
  // log-softmax of the raw logits (before temperature/top-k/top-p); computed
  // only when params.logprobs is set (a full pass over the vocabulary), else 0.
  float logprob = 0.0f;
};

// The settings sample_token reads, from a batch row's.
SamplingParams sampling_params(const RowSampling& row);

// `position` is the position the sampled token will occupy in its sequence.
// A backend's sample_rows (backend.hpp) draws the same token from the same
// logits: the cpu backend calls this, the cuda backend's kernel computes the
// same weights bit for bit and sums them exactly in fixed point, where this
// sums in double; docs/CUDA_BACKEND.md ("Sampling") bounds the difference.
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params,
                          int64_t position);

// The greedy token of a row: the first of its largest values (NaN counts as
// -inf; 0 when no value is larger than -inf), as every backend's argmax_rows.
int32_t greedy_token(std::span<const float> logits);

// The seed of completion `index` of a request with n completions: the
// request's own for the first (so n = 1 draws as before), a mix of both for
// the others (each its own Philox stream).
uint64_t completion_seed(uint64_t request_seed, int index);

// A candidate's weight exp((logit - max_logit) / temperature) as the sampler
// computes it (sampling_math.hpp), for tests that recompute a draw.
float sampling_weight(float logit, float max_logit, float temperature);

}  // namespace tpinfer
