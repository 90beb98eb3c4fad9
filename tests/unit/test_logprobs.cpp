// "logprobs": each chosen token's log-probability under the model's own
// distribution, the log-softmax of the raw logits (before temperature, top-k and
// top-p, as vLLM returns by default), whatever the request samples with.
// Checked through the engine on the cpu backend against a separate forward of
// each whole context, computed here in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "../fake_step.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/collectives.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

class Logprobs : public ::testing::Test {};

constexpr uint64_t kSeed = 9;
constexpr int kBlock = 4, kBlocks = 64;

Model make_model(Backend& backend, const ModelConfig& c) {
  Model m = load_model(backend, c, 0, 1,
                       [&](const TensorShard& s) { return random_tensor_values(c, s, kSeed); });
  allocate_kv_cache(m, backend, kBlocks, kBlock);
  allocate_workspace(m, backend, 128, 8);
  return m;
}

// The last position's logits of `tokens`, as one prefill with no history.
std::vector<float> last_logits(Model& m, Backend& backend, const std::vector<int32_t>& tokens) {
  BatchLayout b;
  b.block_size = kBlock;
  const int32_t n = static_cast<int32_t>(tokens.size());
  b.max_blocks_per_seq = (n + kBlock - 1) / kBlock;
  for (int32_t i = 0; i < b.max_blocks_per_seq; ++i) b.block_tables.push_back(i);
  b.query_start = {0, n};
  b.context_len = {n};
  for (int32_t t = 0; t < n; ++t) {
    b.token_ids.push_back(tokens[t]);
    b.positions.push_back(t);
    b.slot_mapping.push_back(t);
  }
  b.logit_rows = {n - 1};
  std::vector<float> logits;
  forward(m, backend, b, logits);
  return logits;
}

// log softmax(logits / temperature)[token], in double.
double log_prob(const std::vector<float>& logits, int32_t token, double temperature = 1.0) {
  double max = -INFINITY;
  for (float x : logits) max = std::max(max, x / temperature);
  double sum = 0;
  for (float x : logits) sum += std::exp(x / temperature - max);
  return logits[token] / temperature - max - std::log(sum);
}

TEST_F(Logprobs, AreTheRawSoftmaxOfTheChosenTokensWhateverTheSampling) {
  const ModelConfig c = testing::tiny_llama_config(97);
  auto backend = make_cpu_backend(single_process_collectives(), 1);
  Model m = make_model(*backend, c);
  const EngineOptions eo = testing::engine_options_for(c, kBlock, kBlocks);
  Engine engine(eo,
                [&](const BatchLayout& b, StepTokens& out) { step_tokens(m, *backend, b, out); });

  struct Setting {
    float temperature;
    int64_t top_k;
    float top_p;
  };
  const std::vector<Setting> settings = {
      {0.0f, 0, 1.0f}, {0.3f, 0, 1.0f}, {0.7f, 20, 1.0f}, {1.5f, 0, 0.9f}, {1.0f, 5, 0.8f}};
  for (size_t i = 0; i < settings.size(); ++i) {
    Request r;
    r.id_json = std::to_string(i);
    r.prompt = {3, static_cast<int32_t>(10 + i), 40, 7, static_cast<int32_t>(60 - i)};
    r.sampling.max_new_tokens = 10;
    r.sampling.temperature = settings[i].temperature;
    r.sampling.top_k = settings[i].top_k;
    r.sampling.top_p = settings[i].top_p;
    r.sampling.seed = 100 + i;
    r.sampling.logprobs = true;
    engine.add(r);
  }
  std::map<std::string, Result> results;
  while (engine.num_unfinished() > 0)
    for (Result& r : engine.step()) results.emplace(r.id_json, std::move(r));
  ASSERT_EQ(results.size(), settings.size());

  auto ref_backend = make_cpu_backend(single_process_collectives(), 1);
  Model ref = make_model(*ref_backend, c);
  double worst = 0, temperature_shift = 0;
  for (size_t i = 0; i < settings.size(); ++i) {
    const Result& res = results.at(std::to_string(i));
    ASSERT_EQ(res.choices.at(0).logprobs.size(), res.choices.at(0).tokens.size()) << i;
    ASSERT_EQ(res.choices.at(0).tokens.size(), 10u) << i;
    std::vector<int32_t> context = {3, static_cast<int32_t>(10 + i), 40, 7,
                                    static_cast<int32_t>(60 - i)};
    for (size_t k = 0; k < res.choices.at(0).tokens.size(); ++k) {
      const std::vector<float> logits = last_logits(ref, *ref_backend, context);
      const double want = log_prob(logits, res.choices.at(0).tokens[k]);
      EXPECT_NEAR(res.choices.at(0).logprobs[k], want, 1e-4) << "request " << i << " token " << k;
      EXPECT_LE(res.choices.at(0).logprobs[k], 0.0f);
      worst = std::max(worst, std::fabs(res.choices.at(0).logprobs[k] - want));
      if (settings[i].temperature > 0)
        temperature_shift = std::max(
            temperature_shift,
            std::fabs(log_prob(logits, res.choices.at(0).tokens[k], settings[i].temperature) -
                      want));
      context.push_back(res.choices.at(0).tokens[k]);
    }
  }
  // The check tells the two readings apart: post-temperature values differ by
  // far more than the tolerance.
  EXPECT_GT(temperature_shift, 1e-2);
  std::printf(
      "logprobs: worst error %.2e against the direct computation; post-temperature "
      "log-probabilities would differ by up to %.3f\n",
      worst, temperature_shift);
}

}  // namespace
}  // namespace tpinfer
