#pragma once
// A fake of the engine's step call for tests that give whole logits (a
// scripted or host reference model): every row whole on the host, each token
// chosen by sample_token from the row's own settings, as the backends' sample_rows
// and argmax_rows do where the logits are.
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "base/batch.hpp"
#include "base/sampler.hpp"
#include "engine/engine.hpp"
#include "weights/model_config.hpp"

namespace tpinfer::testing {

// batch.logit_rows.size() whole rows of vocab floats.
using LogitsFn = std::function<void(const BatchLayout& batch, std::vector<float>& logits)>;

// A 2-layer fp32 Llama small enough for whole-engine tests on the cpu backend.
inline ModelConfig tiny_llama_config(int64_t vocab) {
  return config_from_hf_json(nlohmann::json{{"architectures", {"LlamaForCausalLM"}},
                                            {"hidden_size", 32},
                                            {"intermediate_size", 48},
                                            {"num_hidden_layers", 2},
                                            {"num_attention_heads", 4},
                                            {"num_key_value_heads", 2},
                                            {"vocab_size", vocab},
                                            {"max_position_embeddings", 128},
                                            {"rms_norm_eps", 1e-5},
                                            {"torch_dtype", "float32"}});
}

// Engine options for a model's config and a cache of num_blocks x block_size.
inline EngineOptions engine_options_for(const ModelConfig& c, int block_size, int num_blocks,
                                        int max_running = 8, int max_step_tokens = 64) {
  EngineOptions eo;
  eo.vocab_size = c.vocab_size;
  eo.max_context = c.max_position_embeddings;
  eo.block_size = block_size;
  eo.num_blocks = num_blocks;
  eo.max_running = max_running;
  eo.max_step_tokens = max_step_tokens;
  return eo;
}

inline StepFn step_from_logits(LogitsFn logits_of) {
  return [f = std::move(logits_of)](const BatchLayout& batch, StepTokens& out) {
    std::vector<float> logits;
    f(batch, logits);
    const size_t rows = batch.logit_rows.size();
    const size_t vocab = rows ? logits.size() / rows : 0;
    out.drawn.assign(rows, {});
    out.top.assign(rows, {});
    for (size_t r = 0; r < rows; ++r) {
      const std::span<const float> row(logits.data() + r * vocab, vocab);
      const RowSampling& s = batch.sampling.at(r);
      if (s.target >= 0) {
        const RowLogprobs lp = row_logprobs(row, s.target, s.top_logprobs);
        out.drawn[r] = {s.target, lp.target};
        out.top[r] = lp.top;
        continue;
      }
      const SampledToken t = sample_token(row, sampling_params(s), s.position);
      out.drawn[r] = {t.token, t.logprob};
      if (s.top_logprobs > 0) out.top[r] = row_logprobs(row, -1, s.top_logprobs).top;
    }
  };
}

}  // namespace tpinfer::testing
