#pragma once
// Whole-model helpers of the GPU tests: small configs, a seeded random model on
// any backend, three mixed steps through a paged cache, and the logit comparison.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "model/model.hpp"
#include "weights/model_config.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::gputest {

constexpr uint64_t kModelSeed = 2024;

// Head dims 64 and 128 take the tensor-core attention, 16 the generic kernel.
inline ModelConfig test_config(const std::string& name) {
  if (name == "llama3_gqa_d64")
    return config_from_hf_json(nlohmann::json::parse(R"({
      "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 1024,
      "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
      "vocab_size": 1000, "max_position_embeddings": 4096, "rope_theta": 500000.0,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
      "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})"));
  if (name == "qwen2_bias_tied_d16")
    return config_from_hf_json(nlohmann::json::parse(R"({
      "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
      "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
      "vocab_size": 301, "max_position_embeddings": 4096, "rope_theta": 10000.0,
      "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "torch_dtype": "bfloat16"})"));
  if (name == "mistral_mha_d128")
    return config_from_hf_json(nlohmann::json::parse(R"({
      "architectures": ["MistralForCausalLM"], "hidden_size": 512, "intermediate_size": 768,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
      "vocab_size": 500, "max_position_embeddings": 4096, "rope_theta": 10000.0,
      "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})"));
  ADD_FAILURE() << "unknown test config " << name;
  return {};
}

// The model's shard for this rank of `comm`, with a KV cache and a workspace.
inline Model load_test_model(Backend& b, const ModelConfig& c, MPI_Comm comm, int blocks,
                             int block_size) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  Model m = load_model(b, c, rank, size, [&](const TensorShard& s) {
    return random_tensor_values(c, s, kModelSeed);
  });
  allocate_kv_cache(m, b, blocks, block_size);
  allocate_workspace(m, b, 256, 8);
  return m;
}

// Three steps over three sequences (prompts of 40, 100 and 1 tokens): step 1
// prefills seq 0, the first 70 tokens of seq 1 (a chunk) and seq 2; step 2
// decodes seqs 0 and 2 and finishes seq 1's prompt; step 3 decodes all three.
// Blocks come from a shuffled pool of `num_blocks`.
inline std::vector<BatchLayout> mixed_steps(int block_size, int num_blocks, int64_t vocab) {
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab) - 1);
  const int final_len[3] = {42, 101, 3};
  const int stride = (101 + block_size - 1) / block_size + 1;
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> tables(3 * stride, -1);
  size_t next = 0;
  for (int s = 0; s < 3; ++s)
    for (int blk = 0; blk < (final_len[s] + block_size - 1) / block_size; ++blk)
      tables[s * stride + blk] = pool.at(next++);
  // Each step: per sequence, the first position and the number of tokens.
  const int plan[3][3][2] = {
      {{0, 40}, {0, 70}, {0, 1}}, {{40, 1}, {70, 30}, {1, 1}}, {{41, 1}, {100, 1}, {2, 1}}};
  std::vector<BatchLayout> steps;
  for (const auto& step : plan) {
    BatchLayout b;
    b.block_size = block_size;
    b.max_blocks_per_seq = stride;
    b.block_tables = tables;
    b.query_start = {0};
    for (int s = 0; s < 3; ++s) {
      const int start = step[s][0], count = step[s][1];
      for (int p = start; p < start + count; ++p) {
        b.token_ids.push_back(tok(rng));
        b.positions.push_back(p);
        b.slot_mapping.push_back(tables[s * stride + p / block_size] * block_size + p % block_size);
      }
      b.query_start.push_back(b.num_tokens());
      b.context_len.push_back(start + count);
      // seq 1 samples only once its prompt is complete.
      if (!(s == 1 && start + count < 100)) b.logit_rows.push_back(b.num_tokens() - 1);
    }
    steps.push_back(b);
  }
  return steps;
}

// max |got - want| <= tol * max |want|, and the same argmax in every row whose
// top-2 margin (in want) exceeds that bound. The logits must not be degenerate.
inline void expect_logits_close(const std::vector<float>& got, const std::vector<float>& want,
                                int64_t vocab, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_FALSE(want.empty()) << what;
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    const double e = std::abs(static_cast<double>(got[i]) - want[i]);
    err = std::isnan(got[i]) ? INFINITY : std::max(err, e);
  }
  ASSERT_GT(scale, 1e-3) << what << ": degenerate logits";
  EXPECT_LE(err, tol * scale) << what << ": max error " << err << " vs logit scale " << scale;
  const size_t rows = want.size() / static_cast<size_t>(vocab);
  size_t checked = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* w = want.data() + r * vocab;
    const float* g = got.data() + r * vocab;
    std::vector<int64_t> idx(static_cast<size_t>(vocab));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + 2, idx.end(),
                      [&](int64_t a, int64_t b) { return w[a] > w[b]; });
    if (w[idx[0]] - w[idx[1]] <= tol * scale) continue;
    ++checked;
    const int64_t g_arg = std::max_element(g, g + vocab) - g;
    EXPECT_EQ(g_arg, idx[0]) << what << ": row " << r << " argmax differs (margin "
                             << w[idx[0]] - w[idx[1]] << ")";
  }
  std::cout << "[ logits   ] " << what << ": max error / scale = " << err / scale << ", " << checked
            << " of " << rows << " rows with a clear argmax\n";
}

}  // namespace tpinfer::gputest
