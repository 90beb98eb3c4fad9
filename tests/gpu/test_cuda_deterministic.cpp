// --deterministic on the cuda backend (CudaBackendOptions::deterministic): a
// row's results are the same bits whatever else shares its step. Checked on
// the ops where the default mode's choices depend on the batch (the GEMM's
// algorithm and GEMV by row count, the attention kernel and its splits by
// decode versus prefill) and on the whole model: one sequence's logits
// prefilled at once, in chunks, decoded token by token, and batched with
// other sequences, must be equal bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.hpp"
#include "model/model.hpp"
#include "model_compare.hpp"

namespace tpinfer::gputest {
namespace {

std::unique_ptr<Backend> cuda_backend(bool deterministic) {
  CudaBackendOptions o;
  o.memory_fraction = 0.1;
  o.deterministic = deterministic;
  return make_cuda_backend(MPI_COMM_SELF, o);
}

// Elements whose bits differ between a and b (over the shorter length).
size_t bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  size_t diff = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    diff += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return diff + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}

// linear over the first n rows of x gives, for each of them, the bits it
// gives inside the full call, at every n (bf16 out, and fp32 out as the
// logits). This is the premise of the mode's GEMM (gemm.hpp): algorithms
// without split-K sum each output over k in one order whatever their tile.
TEST(CudaDeterministicLinear, RowsAreTheSameBitsAtEveryRowCount) {
  SKIP_WITHOUT_GPU();
  auto gpu = cuda_backend(true);
  std::mt19937_64 rng(5);
  const int64_t full = 3000;
  struct Shape {
    int64_t k, m;
    bool bias;
    DType out;
  };
  // Llama-3-8B's qkv, o_proj, down (k 14336) and a slice of the LM head; a small biased one.
  for (const Shape s :
       {Shape{4096, 6144, false, DType::bf16}, Shape{4096, 4096, false, DType::bf16},
        Shape{14336, 4096, false, DType::bf16}, Shape{4096, 16000, false, DType::f32},
        Shape{512, 96, true, DType::bf16},
        // The schedule test's models (model_compare.hpp): mistral_mha_d128's
        // qkv, o, gate_up, down, LM head; qwen2_bias_tied_d16's.
        Shape{512, 1536, false, DType::bf16}, Shape{512, 512, false, DType::bf16},
        Shape{768, 512, false, DType::bf16}, Shape{512, 500, false, DType::f32},
        Shape{64, 128, true, DType::bf16}, Shape{64, 192, false, DType::bf16},
        Shape{96, 64, false, DType::bf16}, Shape{64, 301, false, DType::f32}}) {
    const Tensor x = put(*gpu, {full, s.k}, random_bf16(rng, full * s.k), DType::bf16);
    const Tensor w = put(*gpu, {s.m, s.k}, random_bf16(rng, s.m * s.k, -0.05f, 0.05f), DType::bf16);
    Tensor bias;
    if (s.bias) bias = put(*gpu, {s.m}, random_bf16(rng, s.m), DType::bf16);
    Tensor out = gpu->alloc({full, s.m}, s.out);
    gpu->linear(x, w, s.bias ? &bias : nullptr, out);
    const std::vector<float> whole = get(*gpu, out);
    for (int64_t n : {1, 2, 3, 7, 8, 9, 16, 23, 33, 64, 100, 255, 256, 257, 512, 686, 1000, 1072,
                      1157, 1190, 1200, 1235, 2048}) {
      Tensor o = gpu->alloc({n, s.m}, s.out);
      gpu->linear(x.first_rows(n), w, s.bias ? &bias : nullptr, o);
      const std::vector<float> part = get(*gpu, o);
      const std::vector<float> want(whole.begin(), whole.begin() + n * s.m);
      EXPECT_EQ(bit_differences(part, want), 0u)
          << "w [" << s.m << ", " << s.k << "], " << n << " rows of " << full;
    }
  }
}

// One step's batch of sequences, each (seq, first position, count); the logit
// row of each is its last token. Sequence s owns blocks [s * stride, (s + 1) * stride).
struct Entry {
  int seq, start, count;
};

BatchLayout step_of(const std::vector<Entry>& entries, const std::vector<std::vector<int32_t>>& ids,
                    int block_size, int stride) {
  BatchLayout b;
  b.block_size = block_size;
  b.max_blocks_per_seq = stride;
  b.query_start = {0};
  for (const Entry& e : entries) {
    for (int j = 0; j < stride; ++j) b.block_tables.push_back(e.seq * stride + j);
    for (int p = e.start; p < e.start + e.count; ++p) {
      b.token_ids.push_back(ids[static_cast<size_t>(e.seq)][static_cast<size_t>(p)]);
      b.positions.push_back(p);
      b.slot_mapping.push_back((e.seq * stride + p / block_size) * block_size + p % block_size);
    }
    b.query_start.push_back(b.num_tokens());
    b.context_len.push_back(e.start + e.count);
    b.logit_rows.push_back(b.num_tokens() - 1);
  }
  return b;
}

// The logits of sequence 0's last position (kLen - 1) under each schedule.
// kLen spans three of the mode's 512-key chunks (cuda::kDetChunkKeys), so
// that its attention runs every way the mode has: whole (rows whose step has
// no second chunk), chunks folded in registers (its long prefill steps), and
// split over blocks and folded by a second kernel (its decode steps and other
// small items); the logits must not tell them apart.
constexpr int kLen = 1200, kSeqs = 4, kBlock = 16, kStride = kLen / kBlock + 2;

std::vector<std::vector<float>> last_logits_by_schedule(Model& m, Backend& b, int64_t vocab) {
  std::mt19937_64 rng(31);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab) - 1);
  std::vector<std::vector<int32_t>> ids(kSeqs, std::vector<int32_t>(kLen));
  for (auto& seq : ids)
    for (int32_t& t : seq) t = tok(rng);
  using Steps = std::vector<std::vector<Entry>>;
  std::vector<Steps> schedules;
  schedules.push_back({{{0, 0, kLen}}});                                       // one prefill
  schedules.push_back({{{0, 0, 64}}, {{0, 64, 64}}, {{0, 128, kLen - 128}}});  // 64-token chunks
  {
    Steps s = {{{0, 0, kLen - 10}}};  // then ten decode steps
    for (int p = kLen - 10; p < kLen; ++p) s.push_back({{0, p, 1}});
    schedules.push_back(s);
  }
  // Batched with others: second in its first step, then among their chunks.
  schedules.push_back({{{1, 0, 90}, {0, 0, 150}}, {{2, 0, 100}, {0, 150, kLen - 150}, {3, 0, 7}}});
  {
    // Prefilled beside one sequence, then decoded beside three others' decodes
    // and one's prefill chunk.
    Steps s = {{{0, 0, kLen - 5}, {3, 0, 40}}};
    s.push_back({{1, 0, 60}});
    s.push_back({{2, 0, 30}});
    for (int i = 0; i < 5; ++i)
      s.push_back({{3, 40 + i, 1}, {1, 60 + 20 * i, 20}, {0, kLen - 5 + i, 1}, {2, 30 + i, 1}});
    schedules.push_back(s);
  }
  // A small step across the first chunk boundary (positions 510-513: a split
  // item whose first rows see nothing of its second chunk), then the rest.
  schedules.push_back({{{0, 0, 510}}, {{0, 510, 4}}, {{0, 514, kLen - 514}}});
  std::vector<std::vector<float>> out;
  for (const Steps& steps : schedules) {
    std::vector<float> last;
    for (const auto& entries : steps) {
      std::vector<float> logits;
      forward(m, b, step_of(entries, ids, kBlock, kStride), logits);
      for (size_t i = 0; i < entries.size(); ++i)
        if (entries[i].seq == 0 && entries[i].start + entries[i].count == kLen)
          last.assign(logits.begin() + static_cast<int64_t>(i) * vocab,
                      logits.begin() + static_cast<int64_t>(i + 1) * vocab);
    }
    EXPECT_FALSE(last.empty());
    out.push_back(last);
  }
  return out;
}

class CudaDeterministicModel : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(CudaDeterministicModel, ASequencesLogitsDoNotDependOnItsSchedule) {
  SKIP_WITHOUT_GPU();
  const auto [config, fp8] = GetParam();
  const ModelConfig c = test_config(config);
  const char* names[] = {"in 64-token chunks", "prefill then decode", "batched with others",
                         "decoded beside others", "a 4-token step across a chunk boundary"};
  std::vector<float> default_logits;
  for (bool deterministic : {false, true}) {
    auto gpu = cuda_backend(deterministic);
    Model m = load_test_model(*gpu, c, MPI_COMM_SELF, kSeqs * kStride, kBlock);
    allocate_workspace(m, *gpu, kLen + 40, kSeqs);  // the largest step: kLen - 5 and 40 tokens
    if (fp8) allocate_kv_cache(m, *gpu, kSeqs * kStride, kBlock, DType::fp8_e4m3);
    if (deterministic) {
      ASSERT_EQ(m.ws.logits_local.dtype, DType::f32);
    }
    const auto logits = last_logits_by_schedule(m, *gpu, c.vocab_size);
    // The mode computes the same model: near the default's logits (fp32 logits
    // against bf16 ones, other GEMM algorithms).
    if (deterministic)
      expect_logits_close(logits[0], default_logits, c.vocab_size, 2e-2,
                          std::string(config) + " deterministic vs default");
    else
      default_logits = logits[0];
    for (size_t i = 1; i < logits.size(); ++i) {
      const size_t diff = bit_differences(logits[i], logits[0]);
      if (deterministic)
        EXPECT_EQ(diff, 0u) << config << (fp8 ? " fp8 cache" : "") << ": " << names[i - 1]
                            << " vs one prefill";
      else  // what the mode buys: the default's logits move with the schedule
        std::cout << "[ default  ] " << config << (fp8 ? " fp8" : "") << ", " << names[i - 1]
                  << ": " << diff << " of " << logits[0].size() << " logits differ\n";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaDeterministicModel,
                         ::testing::Combine(::testing::Values("llama3_gqa_d64",
                                                              "qwen2_bias_tied_d16",
                                                              "mistral_mha_d128"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_fp8" : "");
                         });

}  // namespace
}  // namespace tpinfer::gputest
