// The whole forward pass against a plain dense reference written from the
// Hugging Face Llama definition (double precision, no paging, no fusion, full
// unsharded weights): checks how the ops are composed, not just each op.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/collectives.hpp"
#include "job/model_source.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

using Mat = std::vector<double>;  // row-major

struct Dense {
  const ModelConfig& c;
  std::map<std::string, Mat> w;
  Dense(const ModelConfig& cfg, uint64_t seed) : c(cfg) {
    for (const auto& spec : expected_tensors(c)) {
      TensorShard all{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0),
                      spec.shape};
      auto v = random_tensor_values(c, all, seed);
      w[spec.name] = Mat(v.begin(), v.end());
    }
  }
  // y[n, out] = x[n, in] W[out, in]^T
  static Mat matmul(const Mat& x, const Mat& W, int64_t n, int64_t in, int64_t out) {
    Mat y(n * out, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * W[o * in + k];
        y[i * out + o] = s;
      }
    return y;
  }
  Mat rmsnorm(const Mat& x, const Mat& g, int64_t n) const {
    const int64_t h = c.hidden_size;
    Mat y(x.size());
    for (int64_t i = 0; i < n; ++i) {
      double ss = 0;
      for (int64_t k = 0; k < h; ++k) ss += x[i * h + k] * x[i * h + k];
      const double inv = 1.0 / std::sqrt(ss / h + c.rms_norm_eps);
      for (int64_t k = 0; k < h; ++k) y[i * h + k] = x[i * h + k] * inv * g[k];
    }
    return y;
  }
  void rope(Mat& x, int64_t n, int64_t heads) const {
    const int64_t d = c.head_dim;
    const auto inv = rope_inv_freq(c);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t hd = 0; hd < heads; ++hd) {
        double* v = &x[(t * heads + hd) * d];
        for (int64_t i = 0; i < d / 2; ++i) {
          const double a = t * static_cast<double>(inv[i]);
          const double x0 = v[i], x1 = v[i + d / 2];
          v[i] = x0 * std::cos(a) - x1 * std::sin(a);
          v[i + d / 2] = x1 * std::cos(a) + x0 * std::sin(a);
        }
      }
  }
  // Logits of every position of one sequence.
  Mat logits(const std::vector<int32_t>& tokens) const {
    const int64_t n = static_cast<int64_t>(tokens.size()), h = c.hidden_size, d = c.head_dim;
    const int64_t H = c.num_heads, KV = c.num_kv_heads, I = c.intermediate_size;
    Mat x(n * h);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < h; ++k)
        x[t * h + k] = w.at("model.embed_tokens.weight")[tokens[t] * h + k];
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Mat a = rmsnorm(x, w.at(p + "input_layernorm.weight"), n);
      Mat q = matmul(a, w.at(p + "self_attn.q_proj.weight"), n, h, H * d);
      Mat k = matmul(a, w.at(p + "self_attn.k_proj.weight"), n, h, KV * d);
      Mat v = matmul(a, w.at(p + "self_attn.v_proj.weight"), n, h, KV * d);
      if (c.attention_bias)
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t j = 0; j < H * d; ++j)
            q[t * H * d + j] += w.at(p + "self_attn.q_proj.bias")[j];
          for (int64_t j = 0; j < KV * d; ++j) {
            k[t * KV * d + j] += w.at(p + "self_attn.k_proj.bias")[j];
            v[t * KV * d + j] += w.at(p + "self_attn.v_proj.bias")[j];
          }
        }
      rope(q, n, H);
      rope(k, n, KV);
      Mat o(n * H * d, 0.0);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t hd = 0; hd < H; ++hd) {
          const int64_t g = hd / (H / KV);
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e)
              dot += q[(t * H + hd) * d + e] * k[(j * KV + g) * d + e];
            s[j] = dot / std::sqrt(static_cast<double>(d));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (auto& e : s) z += (e = std::exp(e - mx));
          for (int64_t j = 0; j <= t; ++j)
            for (int64_t e = 0; e < d; ++e)
              o[(t * H + hd) * d + e] += s[j] / z * v[(j * KV + g) * d + e];
        }
      Mat proj = matmul(o, w.at(p + "self_attn.o_proj.weight"), n, H * d, h);
      for (int64_t i = 0; i < n * h; ++i) x[i] += proj[i];
      Mat m = rmsnorm(x, w.at(p + "post_attention_layernorm.weight"), n);
      Mat gate = matmul(m, w.at(p + "mlp.gate_proj.weight"), n, h, I);
      Mat up = matmul(m, w.at(p + "mlp.up_proj.weight"), n, h, I);
      for (int64_t i = 0; i < n * I; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      Mat down = matmul(gate, w.at(p + "mlp.down_proj.weight"), n, I, h);
      for (int64_t i = 0; i < n * h; ++i) x[i] += down[i];
    }
    Mat f = rmsnorm(x, w.at("model.norm.weight"), n);
    const auto& head = w.at(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    return matmul(f, head, n, h, c.vocab_size);
  }
};

class ModelReference : public ::testing::Test {};

void check_against_reference(const char* config_json) {
  const ModelConfig c = config_from_hf_json(nlohmann::json::parse(config_json));
  const uint64_t seed = 5;
  const Dense ref(c, seed);
  auto backend = make_cpu_backend(single_process_collectives(), 1);
  Model m = load_model(*backend, c, 0, 1,
                       [&](const TensorShard& s) { return random_tensor_values(c, s, seed); });
  const int block_size = 4;
  allocate_kv_cache(m, *backend, 16, block_size);
  allocate_workspace(m, *backend, 64, 4);
  const std::vector<int32_t> tokens = {1, 7, 3, 9, 11, 2, 5, 8, 4, 6, 10, 12, 3};
  const int64_t n = static_cast<int64_t>(tokens.size());
  const Mat want = ref.logits(tokens);
  // Feed the sequence as a 5-token prefill chunk, then one token per step, so
  // attention reads earlier steps' K/V from the paged cache (blocks reversed).
  int64_t done = 0;
  while (done < n) {
    const int64_t len = done == 0 ? 5 : 1;
    BatchLayout b;
    b.block_size = block_size;
    b.max_blocks_per_seq = 4;
    b.block_tables = {9, 2, 14, 0};
    b.query_start = {0, static_cast<int32_t>(len)};
    b.context_len = {static_cast<int32_t>(done + len)};
    for (int64_t t = done; t < done + len; ++t) {
      b.token_ids.push_back(tokens[t]);
      b.positions.push_back(static_cast<int32_t>(t));
      b.slot_mapping.push_back(b.block_tables[t / block_size] * block_size + t % block_size);
    }
    b.logit_rows = {static_cast<int32_t>(len - 1)};
    std::vector<float> got;
    forward(m, *backend, b, got);
    const int64_t pos = done + len - 1;
    double scale = 0, err = 0;
    for (int64_t v = 0; v < c.vocab_size; ++v) {
      scale = std::max(scale, std::fabs(want[pos * c.vocab_size + v]));
      err = std::max(err, std::fabs(want[pos * c.vocab_size + v] - got[v]));
    }
    EXPECT_LT(err / scale, 1e-4) << "position " << pos;
    EXPECT_GT(scale, 1e-3);
    done += len;
  }
}

TEST_F(ModelReference, LlamaGqaLlama3Rope) {
  check_against_reference(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 32,
    "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 64,
    "rope_theta": 10000.0, "rope_scaling": {"rope_type": "llama3", "factor": 4.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "rms_norm_eps": 1e-5, "torch_dtype": "float32"})");
}

TEST_F(ModelReference, Qwen2BiasTiedMqa) {
  check_against_reference(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 48,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6,
    "num_key_value_heads": 1, "vocab_size": 70, "max_position_embeddings": 64,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
    "torch_dtype": "float32"})");
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {
namespace {

// Weights made by the backend from the seed equal the file's (random_tensor_values),
// shard by shard, at TP 2 (column slices, fused q|k|v).
TEST_F(ModelReference, BackendRandomFillEqualsTheFileValues) {
  const ModelConfig c = config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 37, "torch_dtype": "bfloat16"})"));
  auto backend = make_cpu_backend(single_process_collectives(), 1);
  for (int rank = 0; rank < 2; ++rank) {
    Model from_reader = load_model(
        *backend, c, rank, 2, [&](const TensorShard& s) { return random_tensor_values(c, s, 9); });
    Model from_fill = load_model(*backend, c, rank, 2, random_weights(c, 9));
    auto host = [&](const Tensor& t) {
      std::vector<float> v(static_cast<size_t>(t.numel()));
      backend->download(t, v.data());
      return v;
    };
    EXPECT_EQ(host(from_reader.layers[0].qkv), host(from_fill.layers[0].qkv));
    EXPECT_EQ(host(from_reader.layers[0].qkv_bias), host(from_fill.layers[0].qkv_bias));
    EXPECT_EQ(host(from_reader.layers[0].o_proj), host(from_fill.layers[0].o_proj));
    EXPECT_EQ(host(from_reader.layers[0].down), host(from_fill.layers[0].down));
    EXPECT_EQ(host(from_reader.embed), host(from_fill.embed));
    // Not all equal to one value: the fill really wrote random numbers.
    const auto qkv = host(from_fill.layers[0].qkv);
    EXPECT_NE(*std::min_element(qkv.begin(), qkv.end()), *std::max_element(qkv.begin(), qkv.end()));
  }
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {
namespace {

TEST_F(ModelReference, CpuArgmaxRowsTakesTheLowestColumnOfTiesAndSkipsNaN) {
  auto b = make_cpu_backend(single_process_collectives(), 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // Row 3's last column is past valid_cols and must be ignored.
  const std::vector<float> host = {1,    5,    5,    2,    nan, 0.5f, nan, -1,
                                   -inf, -inf, -inf, -inf, 0,   1,    2,   99};
  Tensor l = b->alloc({4, 4}, DType::f32);
  b->upload(l, host.data());
  Tensor out = b->alloc({4, 2}, DType::f32);
  b->argmax_rows(l, 3, 100, out);
  std::vector<float> got(8);
  b->download(out, got.data());
  EXPECT_EQ(got, (std::vector<float>{5, 101, 0.5f, 101, -inf, 100, 2, 102}));
}

}  // namespace
}  // namespace tpinfer
