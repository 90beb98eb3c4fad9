// config.json as transformers 5 writes it: RoPE settings in "rope_parameters"
// (rope_theta inside) rather than rope_theta + rope_scaling.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "weights/model_config.hpp"

namespace tpinfer {
namespace {

nlohmann::json base() {
  return nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})");
}

TEST(ModelConfig, ReadsTransformers5RopeParameters) {
  nlohmann::json j = base();
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 8.0},           {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  ModelConfig c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 64);

  j = base();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_theta, 1000000.0);
  EXPECT_EQ(c.rope_scaling.type, "");

  j = base();
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 10000.0}, {"factor", 2.0}};
  c = config_from_hf_json(j);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_EQ(c.rope_scaling.factor, 2.0);
  // The weight file's JSON (rope_theta + rope_scaling) reads back the same.
  const ModelConfig back = config_from_hf_json(config_to_json(c));
  EXPECT_EQ(back.rope_scaling.type, "linear");
  EXPECT_EQ(back.rope_theta, 10000.0);
}

TEST(ModelConfig, RefusesPerLayerTypeRopeParameters) {
  nlohmann::json j = base();
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  try {
    config_from_hf_json(j);
    FAIL() << "accepted per-layer-type rope_parameters";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("rope_parameters is not one set"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tpinfer
