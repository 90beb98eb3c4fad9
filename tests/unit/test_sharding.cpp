// The sharding rules: every element of a split tensor belongs to exactly one
// rank; replicated tensors and replicated KV heads are whole on every rank that
// needs them; impossible TP sizes fail naming the rule.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "model/model.hpp"
#include "weights/sharding.hpp"

namespace tpinfer {
namespace {

ModelConfig make_config(int heads, int kv_heads, int vocab, bool bias = false, bool tied = false) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"hidden_size", 16 * heads},
                      {"intermediate_size", 48},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", heads},
                      {"num_key_value_heads", kv_heads},
                      {"vocab_size", vocab},
                      {"attention_bias", bias},
                      {"tie_word_embeddings", tied}};
  return config_from_hf_json(j);
}

// How many ranks hold each element of each tensor.
std::vector<int> coverage(const ModelConfig& c, const TensorSpec& spec, int tp) {
  int64_t rows = spec.shape[0], cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  std::vector<int> count(static_cast<size_t>(rows * cols), 0);
  for (int r = 0; r < tp; ++r) {
    const TensorShard s = shard_of(c, spec, r, tp);
    const int64_t r0 = s.offset[0], nr = s.count[0];
    const int64_t c0 = s.offset.size() > 1 ? s.offset[1] : 0,
                  nc = s.count.size() > 1 ? s.count[1] : 1;
    EXPECT_LE(r0 + nr, rows) << spec.name;
    EXPECT_LE(c0 + nc, cols) << spec.name;
    for (int64_t i = r0; i < r0 + nr; ++i)
      for (int64_t j = c0; j < c0 + nc; ++j) ++count[i * cols + j];
  }
  return count;
}

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

TEST(Sharding, SplitTensorsArePartitionedAndNormsReplicated) {
  for (int tp : {1, 2, 4, 8}) {
    const ModelConfig c = make_config(8, 8, 1001, /*bias=*/true);
    for (const auto& spec : expected_tensors(c)) {
      const auto cov = coverage(c, spec, tp);
      const bool replicated = ends_with(spec.name, "norm.weight");
      for (int v : cov) ASSERT_EQ(v, replicated ? tp : 1) << spec.name << " tp " << tp;
    }
  }
}

TEST(Sharding, ReplicatedKvHeadsGoToTheRanksOfTheirQueryHeads) {
  // 8 query heads, 2 KV heads, TP 4: ranks 0,1 hold KV head 0; ranks 2,3 hold KV head 1.
  const ModelConfig c = make_config(8, 2, 64);
  for (int r = 0; r < 4; ++r) {
    const ShardLayout s = shard_layout(c, r, 4);
    EXPECT_EQ(s.q_heads, 2);
    EXPECT_EQ(s.kv_heads, 1);
    EXPECT_EQ(s.first_kv_head, r / 2);
    // Query heads of this rank: [2r, 2r+2); their KV head in the full model: q / 4.
    EXPECT_EQ((2 * r) / (c.num_heads / c.num_kv_heads), s.first_kv_head);
    const TensorShard k =
        shard_of(c, {"model.layers.0.self_attn.k_proj.weight", {2 * 16, 128}}, r, 4);
    EXPECT_EQ(k.offset[0], (r / 2) * 16);
    EXPECT_EQ(k.count[0], 16);
  }
  const auto cov = coverage(c, {"model.layers.0.self_attn.v_proj.weight", {32, 128}}, 4);
  for (int v : cov) EXPECT_EQ(v, 2);
}

TEST(Sharding, VocabSlicesCoverAnUnevenVocab) {
  const ModelConfig c = make_config(4, 4, 1001);
  int64_t total = 0;
  for (int r = 0; r < 4; ++r) {
    const ShardLayout s = shard_layout(c, r, 4);
    EXPECT_EQ(s.vocab_per_rank, 251);
    EXPECT_EQ(s.vocab_offset, r * 251);
    total += s.vocab_local;
  }
  EXPECT_EQ(total, 1001);
  EXPECT_EQ(shard_layout(c, 3, 4).vocab_local, 248);
}

TEST(Sharding, TiedEmbeddingsHaveNoLmHead) {
  const auto names = [](const ModelConfig& c) {
    std::vector<std::string> n;
    for (const auto& t : expected_tensors(c)) n.push_back(t.name);
    return n;
  };
  const auto tied = names(make_config(4, 4, 64, false, true));
  const auto untied = names(make_config(4, 4, 64, false, false));
  EXPECT_EQ(std::count(tied.begin(), tied.end(), "lm_head.weight"), 0);
  EXPECT_EQ(std::count(untied.begin(), untied.end(), "lm_head.weight"), 1);
  EXPECT_EQ(untied.size(), 2u + 2u * 9u + 1u);
}

TEST(Sharding, ImpossibleTpSizesNameTheRule) {
  const ModelConfig c = make_config(8, 4, 64);
  try {
    check_tp_size(c, 3);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("num_attention_heads 8"), std::string::npos) << e.what();
  }
  // 12 heads, 4 KV heads, TP 6: 6 divides 12 but neither 4 % 6 nor 6 % 4 is 0.
  const ModelConfig odd = make_config(12, 4, 64);
  try {
    check_tp_size(odd, 6);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("num_key_value_heads 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_tp_size(c, 0), ModelError);
  EXPECT_NO_THROW(check_tp_size(c, 8));  // 8 | 8 heads; KV replicated (8 % 4 == 0)
}

TEST(ModelConfig, ParsesHuggingFaceFieldsAndDefaults) {
  const ModelConfig c = config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100,
    "eos_token_id": [5, 6], "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"));
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.attention_bias);  // Qwen2 has q/k/v bias by default
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  // Round trip through the weight file's JSON.
  const ModelConfig back = config_from_hf_json(config_to_json(c));
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.rope_scaling.factor, 8.0);
  EXPECT_EQ(back.attention_bias, true);
}

TEST(ModelConfig, RejectsBadConfigsNamingTheField) {
  auto fails_with = [](const char* text, const char* fragment) {
    try {
      config_from_hf_json(nlohmann::json::parse(text));
      ADD_FAILURE() << "accepted " << text;
    } catch (const ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  fails_with(
      R"({"hidden_size": 64, "intermediate_size": 1, "num_attention_heads": 4, "vocab_size": 9})",
      "num_hidden_layers");
  fails_with(R"({"architectures": ["GPT2LMHeadModel"]})", "GPT2LMHeadModel");
  fails_with(R"({"hidden_size": "big", "intermediate_size": 1, "num_hidden_layers": 1,
                 "num_attention_heads": 4, "vocab_size": 9})",
             "hidden_size");
  fails_with(R"({"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
                 "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 9})",
             "num_key_value_heads 3");
  fails_with(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 8,
                 "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 9,
                 "max_position_embeddings": 32768, "sliding_window": 4096})",
             "sliding_window");
}

TEST(Rope, Llama3ScalingKeepsHighFrequenciesAndDividesLowOnes) {
  ModelConfig c = make_config(4, 4, 64);
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  const auto plain = rope_inv_freq(c);
  c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  const auto scaled = rope_inv_freq(c);
  ASSERT_EQ(scaled.size(), 64u);
  EXPECT_FLOAT_EQ(scaled[0], plain[0]);           // wavelength 2*pi < 2048: unchanged
  EXPECT_FLOAT_EQ(scaled[63], plain[63] / 8.0f);  // longest wavelength: divided by factor
  // In between, the blend is strictly between the two.
  bool blended = false;
  for (int i = 0; i < 64; ++i)
    if (scaled[i] < plain[i] * 0.999f && scaled[i] > plain[i] / 8.0f * 1.001f) blended = true;
  EXPECT_TRUE(blended);
  EXPECT_FLOAT_EQ(plain[1], static_cast<float>(1.0 / std::pow(500000.0, 2.0 / 128)));
}

}  // namespace
}  // namespace tpinfer
