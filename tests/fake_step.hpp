#pragma once
// A fake of the engine's step call for tests that give whole logits (a
// scripted or host reference model): every row whole on the host, each token
// chosen by sample_token from the row's own settings, as the backends' sample_rows
// and argmax_rows do where the logits are.
#include <functional>
#include <span>
#include <vector>

#include "base/batch.hpp"
#include "base/sampler.hpp"
#include "engine/engine.hpp"

namespace tpinfer::testing {

// batch.logit_rows.size() whole rows of vocab floats.
using LogitsFn = std::function<void(const BatchLayout& batch, std::vector<float>& logits)>;

inline SamplingParams params_of(const RowSampling& r) {
  SamplingParams p;
  p.temperature = r.temperature;
  p.top_p = r.top_p;
  p.top_k = r.top_k;
  p.seed = r.seed;
  p.logprobs = r.logprobs;
  return p;
}

inline StepFn step_from_logits(LogitsFn logits_of) {
  return [f = std::move(logits_of)](const BatchLayout& batch, StepTokens& out) {
    std::vector<float> logits;
    f(batch, logits);
    const size_t rows = batch.logit_rows.size();
    const size_t vocab = rows ? logits.size() / rows : 0;
    out.drawn.assign(rows, {});
    for (size_t r = 0; r < rows; ++r) {
      const std::span<const float> row(logits.data() + r * vocab, vocab);
      const RowSampling& s = batch.sampling.at(r);
      const SampledToken t = sample_token(row, params_of(s), s.position);
      out.drawn[r] = {t.token, t.logprob};
    }
  };
}

}  // namespace tpinfer::testing
