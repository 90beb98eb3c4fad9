#pragma once
// The model's hyper-parameters, read from a Hugging Face-style config.json.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "base/dtype.hpp"

namespace tpinfer {

struct RopeScaling {
  std::string type;  // "" (none), "llama3" or "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM | MistralForCausalLM | Qwen2ForCausalLM
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2)
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  DType dtype = DType::bf16;  // storage dtype of the weights
  double initializer_range = 0.02;
};

// Parses a Hugging Face config.json object; throws ModelError naming the field and rule.
ModelConfig config_from_hf_json(const nlohmann::json& j);
// The same from a config.json file (InputError when unreadable or not JSON).
ModelConfig read_hf_config_file(const std::string& path);
// The JSON stored in the weight file's `config` attribute (HF field names, round-trips).
nlohmann::json config_to_json(const ModelConfig& c);
// Checks the sizes are positive and consistent; throws ModelError naming the rule.
void validate_config(const ModelConfig& c);

}  // namespace tpinfer
