#include "weights/model_config.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace tpinfer {

namespace {

template <typename T>
T field(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw ModelError(std::string("config field '") + key + "' has the wrong type: " + it->dump());
  }
}

template <typename T>
T required(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null())
    throw ModelError(std::string("config is missing the required field '") + key + "'");
  return field<T>(j, key, T{});
}

}  // namespace

ModelConfig config_from_hf_json(const nlohmann::json& j) {
  if (!j.is_object()) throw ModelError("model config is not a JSON object");
  ModelConfig c;
  auto archs = field<std::vector<std::string>>(j, "architectures", {});
  c.architecture = archs.empty() ? field<std::string>(j, "architecture", "") : archs[0];
  if (c.architecture.empty()) c.architecture = "LlamaForCausalLM";
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "MistralForCausalLM" &&
      c.architecture != "Qwen2ForCausalLM")
    throw ModelError("config architecture '" + c.architecture +
                     "' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  c.hidden_size = required<int64_t>(j, "hidden_size");
  c.intermediate_size = required<int64_t>(j, "intermediate_size");
  c.num_layers = required<int64_t>(j, "num_hidden_layers");
  c.num_heads = required<int64_t>(j, "num_attention_heads");
  c.num_kv_heads = field<int64_t>(j, "num_key_value_heads", c.num_heads);
  c.head_dim = field<int64_t>(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.vocab_size = required<int64_t>(j, "vocab_size");
  c.max_position_embeddings = field<int64_t>(j, "max_position_embeddings", 2048);
  c.rope_theta = field<double>(j, "rope_theta", 10000.0);
  // transformers 5 writes "rope_parameters" instead of rope_scaling: the same
  // fields with rope_theta inside ({"rope_type": "default", "rope_theta": ..}).
  const nlohmann::json* rope = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& rs = j[key];
    if (!rs.is_object() ||
        std::any_of(rs.begin(), rs.end(), [](const nlohmann::json& v) { return v.is_object(); }))
      throw ModelError(std::string("config ") + key +
                       " is not one set of RoPE parameters "
                       "(per-layer-type RoPE is not supported): " +
                       rs.dump());
    c.rope_theta = field<double>(rs, "rope_theta", c.rope_theta);
    rope = &rs;  // rope_scaling, when a file has both
  }
  if (rope) {
    const auto& rs = *rope;
    c.rope_scaling.type = field<std::string>(rs, "rope_type", field<std::string>(rs, "type", ""));
    if (c.rope_scaling.type == "default") c.rope_scaling.type = "";
    if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "llama3" &&
        c.rope_scaling.type != "linear")
      throw ModelError("config rope_scaling type '" + c.rope_scaling.type +
                       "' is not supported (llama3, linear)");
    c.rope_scaling.factor = field<double>(rs, "factor", 1.0);
    c.rope_scaling.low_freq_factor = field<double>(rs, "low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = field<double>(rs, "high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings =
        field<int64_t>(rs, "original_max_position_embeddings", 8192);
  }
  c.rms_norm_eps = field<double>(j, "rms_norm_eps", 1e-6);
  c.tie_word_embeddings = field<bool>(j, "tie_word_embeddings", false);
  c.attention_bias = field<bool>(j, "attention_bias", c.architecture == "Qwen2ForCausalLM");
  c.bos_token_id = field<int64_t>(j, "bos_token_id", -1);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    if (j["eos_token_id"].is_array())
      c.eos_token_ids = field<std::vector<int64_t>>(j, "eos_token_id", {});
    else
      c.eos_token_ids = {field<int64_t>(j, "eos_token_id", -1)};
  }
  c.dtype = dtype_from_name(
      field<std::string>(j, "torch_dtype", field<std::string>(j, "dtype", "bfloat16")));
  c.initializer_range = field<double>(j, "initializer_range", 0.02);
  if (c.architecture == "MistralForCausalLM") {
    auto sw = field<int64_t>(j, "sliding_window", 0);
    if (sw > 0 && sw < c.max_position_embeddings)
      throw ModelError("config sliding_window " + std::to_string(sw) +
                       " < max_position_embeddings: sliding-window attention is not supported");
  }
  validate_config(c);
  return c;
}

nlohmann::json config_to_json(const ModelConfig& c) {
  nlohmann::json j;
  j["architectures"] = {c.architecture};
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {
        {"rope_type", c.rope_scaling.type},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
  }
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = dtype_name(c.dtype);
  j["initializer_range"] = c.initializer_range;
  return j;
}

void validate_config(const ModelConfig& c) {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0)
      throw ModelError(std::string("config ") + name + " must be > 0, got " + std::to_string(v));
  };
  positive(c.hidden_size, "hidden_size");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_layers, "num_hidden_layers");
  positive(c.num_heads, "num_attention_heads");
  positive(c.num_kv_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.vocab_size, "vocab_size");
  positive(c.max_position_embeddings, "max_position_embeddings");
  if (c.num_heads % c.num_kv_heads != 0)
    throw ModelError("config num_attention_heads " + std::to_string(c.num_heads) +
                     " is not a multiple of num_key_value_heads " + std::to_string(c.num_kv_heads));
  if (c.head_dim % 2 != 0)
    throw ModelError("config head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (c.rope_theta <= 0) throw ModelError("config rope_theta must be > 0");
  if (c.rms_norm_eps <= 0) throw ModelError("config rms_norm_eps must be > 0");
}

ModelConfig read_hf_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot open config file " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("config file " + path + " is not valid JSON: " + e.what());
  }
  try {
    return config_from_hf_json(j);
  } catch (const ModelError& e) {
    throw ModelError(path + ": " + e.what());
  }
}

}  // namespace tpinfer
