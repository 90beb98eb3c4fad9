#pragma once
// Token sampling from one row of logits: greedy, temperature, top-k, top-p.
// The random draw is Philox keyed by the request's seed and the token's
// position, so the same logits give the same token on any rank, in any batch.
#include <cstdint>
#include <span>

#include "tpinfer/request.hpp"

namespace tpinfer {

struct SampledToken {
  int32_t token = 0;
  // log-softmax of the raw logits (before temperature/top-k/top-p); computed
  // only when params.logprobs is set (a full pass over the vocabulary), else 0.
  float logprob = 0.0f;
};

// `position` is the position the sampled token will occupy in its sequence.
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params,
                          int64_t position);

}  // namespace tpinfer
