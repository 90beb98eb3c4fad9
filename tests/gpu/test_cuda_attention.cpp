// Paged attention on the GPU against the cpu backend: mixed prefill + decode
// batches over shuffled block tables, GQA ratios 1 to 8, block sizes 16 and 32,
// head dims 64 and 128 (tensor-core kernels) and 12, 16, 96, 256 (generic
// kernel), contexts up to 3000 tokens (split decode), and scores in the
// hundreds (the softmax must subtract its running maximum). The bf16 head_dim
// 128 layouts run again with the Hopper wgmma prefill kernel
// (--cuda-prefill-attention wgmma), which must also match the mma.sync one.
//
// The cache holds bf16-exact values at every context position and NaN in every
// other slot, and the k / v parts of qkv are NaN: reading anything but the
// sequence's own cached keys poisons the output.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fp8.hpp"
#include "gpu_test_util.hpp"

namespace tpinfer::gputest {
namespace {

constexpr double kTol = 1e-2;

struct AttentionCase {
  int q_heads, kv_heads, head_dim, block_size;
  bool fp8_cache = false;  // both backends hold the cache in float8 e4m3
  // The cuda backend's prefill items' kernel (bf16 cache, head_dim 128).
  CudaBackendOptions::PrefillAttention prefill = CudaBackendOptions::PrefillAttention::mma;
};

constexpr auto kWgmma = CudaBackendOptions::PrefillAttention::wgmma;

std::string case_name(const AttentionCase& c) {
  return "q" + std::to_string(c.q_heads) + "kv" + std::to_string(c.kv_heads) + "d" +
         std::to_string(c.head_dim) + "bs" + std::to_string(c.block_size) +
         (c.fp8_cache ? "fp8" : "") + (c.prefill == kWgmma ? "wgmma" : "");
}

// A cache's K and V, [slots, kv heads x head dim] each: random values at every
// cached position of seqs (NaN in the slots nobody wrote), K in
// [-k_range, k_range], V in [-v_range, v_range], rounded through e4m3 when fp8.
struct CacheValues {
  std::vector<float> k, v;
};
CacheValues random_cache(const std::vector<SeqSpec>& seqs, const Paging& paging, int block_size,
                         int64_t kvw, std::mt19937_64& rng, float k_range, float v_range,
                         bool fp8) {
  const int64_t slots = static_cast<int64_t>(paging.num_blocks) * block_size;
  CacheValues c{std::vector<float>(slots * kvw, kNaN), std::vector<float>(slots * kvw, kNaN)};
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int j = 0; j < seqs[s].context(); ++j) {
      const int64_t slot = paging.slot(static_cast<int>(s), j);
      auto kh = random_bf16(rng, kvw, -k_range, k_range);
      auto vh = random_bf16(rng, kvw, -v_range, v_range);
      if (fp8)
        for (auto* v : {&kh, &vh})
          for (float& x : *v) x = fp8_e4m3_to_float(float_to_fp8_e4m3(x));
      std::copy(kh.begin(), kh.end(), c.k.begin() + slot * kvw);
      std::copy(vh.begin(), vh.end(), c.v.begin() + slot * kvw);
    }
  return c;
}

class CudaAttention : public ::testing::TestWithParam<AttentionCase> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    be_ = std::make_unique<BackendPair>(CudaBackendOptions{}.gemv_max_rows,
                                        CudaBackendOptions{}.gemm_tune, GetParam().prefill);
  }

  // Runs attention over `seqs` on both backends and compares. Sequences at
  // index >= `big_from` get q values in [-300, 300].
  // per_token: each query token's outputs against its own rms. A long prefill
  // mixes rows over 1 key (outputs of V's size) with rows over hundreds
  // (averages, far smaller): one rms for the sequence would hold the first to
  // the second's scale, which bf16's P and V rounding do not meet.
  void run(const AttentionCase& c, const std::vector<SeqSpec>& seqs, size_t big_from,
           const std::string& what, bool per_token = false) {
    Backend& cpu = *be_->cpu;
    Backend& gpu = *be_->gpu;
    const int qh = c.q_heads, kvh = c.kv_heads, hd = c.head_dim, bs = c.block_size;
    // Not 1/sqrt(hd): the op must use a.scale.
    const AttentionShape a{qh, kvh, hd, 0.7f / std::sqrt(static_cast<float>(hd))};
    Paging paging = make_paging(seqs, bs, rng_);
    const BatchLayout b = make_batch(seqs, paging);
    cpu.set_batch(b);
    gpu.set_batch(b);

    const CacheValues cache = random_cache(seqs, paging, bs, static_cast<int64_t>(kvh) * hd, rng_,
                                           1.0f, 3.0f, c.fp8_cache);
    const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, kvh, hd};
    const DType cpu_cache = c.fp8_cache ? DType::fp8_e4m3 : DType::f32;
    const DType gpu_cache = c.fp8_cache ? DType::fp8_e4m3 : DType::bf16;
    Tensor kc = put(cpu, cache_shape, cache.k, cpu_cache);
    Tensor vc = put(cpu, cache_shape, cache.v, cpu_cache);
    Tensor kg = put(gpu, cache_shape, cache.k, gpu_cache);
    Tensor vg = put(gpu, cache_shape, cache.v, gpu_cache);

    const int64_t n = b.num_tokens(), row = static_cast<int64_t>(qh + 2 * kvh) * hd;
    std::vector<float> xh(n * row, kNaN);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const float range = s >= big_from ? 300.0f : 4.0f;
      for (int t = b.query_start[s]; t < b.query_start[s + 1]; ++t) {
        const auto q = random_bf16(rng_, static_cast<size_t>(qh) * hd, -range, range);
        std::copy(q.begin(), q.end(), xh.begin() + t * row);
      }
    }
    Tensor xc = put(cpu, {n, row}, xh, DType::f32), xg = put(gpu, {n, row}, xh, DType::bf16);
    Tensor oc = poisoned(cpu, {n, qh * hd}, DType::f32);
    Tensor og = poisoned(gpu, {n, qh * hd}, DType::bf16);
    cpu.attention(xc, kc, vc, a, oc);
    gpu.attention(xg, kg, vg, a, og);
    const auto want = get(cpu, oc), got = get(gpu, og);
    // Per sequence, so that a failure names the one that broke.
    for (size_t s = 0; s < seqs.size(); ++s) {
      const std::string name = what + " sequence " + std::to_string(s) + " (start " +
                               std::to_string(seqs[s].start) + ", " +
                               std::to_string(seqs[s].n_query) + " queries)";
      const size_t row = static_cast<size_t>(qh) * hd;
      const size_t first = static_cast<size_t>(b.query_start[s]);
      const size_t last = static_cast<size_t>(b.query_start[s + 1]);
      for (size_t t = first; t < last; t = per_token ? t + 1 : last) {
        const size_t from = t * row, to = (per_token ? t + 1 : last) * row;
        expect_close(std::vector<float>(got.begin() + from, got.begin() + to),
                     std::vector<float>(want.begin() + from, want.begin() + to), kTol,
                     per_token ? name + " token " + std::to_string(t - first) : name);
      }
    }
  }

  std::unique_ptr<BackendPair> be_;
  std::mt19937_64 rng_{424242};
};

// Prefill from 0, decodes at contexts 1..3000 (one long enough to split),
// two-token and chunked prefills continuing cached prefixes, a 200-token
// prefill (several row tiles), a chunk deep into a long context, and a last
// sequence with huge scores.
TEST_P(CudaAttention, MixedPrefillAndDecodeMatchesCpu) {
  const std::vector<SeqSpec> seqs = {{0, 37},  {19, 1},    {0, 1},   {2999, 1}, {50, 2}, {100, 70},
                                     {0, 200}, {2000, 33}, {511, 1}, {15, 17},  {40, 1}};
  run(GetParam(), seqs, seqs.size() - 2, "mixed");
}

// Decode only, as in steady state: many sequences, one token each; contexts up
// to 1100 (split over blocks) and up to 256 (one split: no merge kernel).
TEST_P(CudaAttention, DecodeBatchMatchesCpu) {
  for (int longest : {1100, 256}) {
    std::vector<SeqSpec> seqs;
    std::uniform_int_distribution<int> len(1, longest);
    for (int s = 0; s < 48; ++s) seqs.push_back({len(rng_) - 1, 1});
    run(GetParam(), seqs, seqs.size(), "decode batch up to " + std::to_string(longest));
  }
}

// One long decode alone: the most splits (every block of the GPU on one sequence).
TEST_P(CudaAttention, SingleLongDecodeMatchesCpu) {
  run(GetParam(), {{2999, 1}}, 1, "single decode");
  run(GetParam(), {{2999, 1}}, 0, "single decode, huge scores");
}

// Long causal prefills: from 0 (every tile of a row's keys, the diagonal
// masked) and a chunk continuing a cached prefix, the second with huge scores.
TEST_P(CudaAttention, LongPrefillsMatchCpu) {
  const std::vector<SeqSpec> seqs = {{0, 700}, {300, 400}};
  run(GetParam(), seqs, 1, "long prefills", /*per_token=*/true);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CudaAttention,
    ::testing::Values(AttentionCase{8, 8, 128, 16}, AttentionCase{8, 4, 128, 32},
                      AttentionCase{16, 4, 128, 16}, AttentionCase{32, 4, 128, 32},
                      AttentionCase{8, 2, 64, 16}, AttentionCase{8, 1, 64, 32},
                      AttentionCase{4, 2, 16, 16}, AttentionCase{6, 3, 12, 32},
                      AttentionCase{4, 1, 96, 16}, AttentionCase{2, 1, 256, 16},
                      // An fp8 cache: tensor-core kernels (tiles converted to bf16
                      // after landing) and the generic kernel.
                      AttentionCase{8, 8, 128, 16, true}, AttentionCase{32, 4, 128, 32, true},
                      AttentionCase{8, 2, 64, 16, true}, AttentionCase{4, 2, 16, 16, true},
                      AttentionCase{2, 1, 256, 16, true}),
    [](const auto& info) { return case_name(info.param); });

// The bf16 head_dim 128 layouts with the prefill items on the wgmma kernel.
INSTANTIATE_TEST_SUITE_P(Wgmma, CudaAttention,
                         ::testing::Values(AttentionCase{8, 8, 128, 16, false, kWgmma},
                                           AttentionCase{8, 4, 128, 32, false, kWgmma},
                                           AttentionCase{16, 4, 128, 16, false, kWgmma},
                                           AttentionCase{32, 4, 128, 32, false, kWgmma},
                                           AttentionCase{32, 8, 128, 64, false, kWgmma}),
                         [](const auto& info) { return case_name(info.param); });

// The wgmma prefill kernel against the mma.sync one on Llama-3-8B's attention
// shape: a 2048-token causal prefill alone, then beside a chunk continuing a
// prefix and a decode; the two differ only in summation order.
TEST(CudaAttentionWgmma, MatchesMmaOnLongCausalPrefill) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<Backend> be[2];
  for (int w = 0; w < 2; ++w) {
    CudaBackendOptions o;
    o.memory_fraction = 0.1;
    o.prefill_attention = w == 1 ? kWgmma : CudaBackendOptions::PrefillAttention::mma;
    be[w] = make_cuda_backend(MPI_COMM_SELF, o);
  }
  std::mt19937_64 rng(2048);
  const int qh = 32, kvh = 8, hd = 128;
  const AttentionShape a{qh, kvh, hd, 1.0f / std::sqrt(128.0f)};
  for (int bs : {16, 64}) {
    for (const auto& seqs : {std::vector<SeqSpec>{{0, 2048}},
                             std::vector<SeqSpec>{{0, 2048}, {500, 300}, {1000, 1}}}) {
      Paging paging = make_paging(seqs, bs, rng);
      const BatchLayout b = make_batch(seqs, paging);
      const CacheValues cache =
          random_cache(seqs, paging, bs, static_cast<int64_t>(kvh) * hd, rng, 2.0f, 1.0f, false);
      const int64_t n = b.num_tokens(), row = static_cast<int64_t>(qh + 2 * kvh) * hd;
      std::vector<float> xh(n * row, kNaN);
      for (int64_t t = 0; t < n; ++t) {
        const auto q = random_bf16(rng, static_cast<size_t>(qh) * hd, -2.0f, 2.0f);
        std::copy(q.begin(), q.end(), xh.begin() + t * row);
      }
      const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, kvh, hd};
      std::vector<float> out[2];
      for (int w = 0; w < 2; ++w) {
        Backend& g = *be[w];
        g.set_batch(b);
        Tensor kc = put(g, cache_shape, cache.k, DType::bf16);
        Tensor vc = put(g, cache_shape, cache.v, DType::bf16);
        Tensor x = put(g, {n, row}, xh, DType::bf16);
        Tensor o = poisoned(g, {n, qh * hd}, DType::bf16);
        g.attention(x, kc, vc, a, o);
        out[w] = get(g, o);
      }
      expect_close(out[1], out[0], kTol,
                   "wgmma vs mma, block size " + std::to_string(bs) + ", " +
                       std::to_string(seqs.size()) + " sequences");
    }
  }
}

TEST(CudaAttentionChecks, RejectsBadLayouts) {
  SKIP_WITHOUT_GPU();
  BackendPair be;
  Backend& gpu = *be.gpu;
  std::mt19937_64 rng(5);
  const AttentionShape a{4, 2, 8, 0.35f};
  const std::vector<SeqSpec> seqs = {{0, 3}, {5, 1}};
  Paging paging = make_paging(seqs, 4, rng);
  BatchLayout b = make_batch(seqs, paging);
  gpu.set_batch(b);
  const std::vector<int64_t> cache_shape = {paging.num_blocks, 4, 2, 8};
  Tensor kc = poisoned(gpu, cache_shape, DType::bf16), vc = poisoned(gpu, cache_shape, DType::bf16);
  Tensor qkv = put(gpu, {4, 64}, random_bf16(rng, 256), DType::bf16);
  Tensor out = poisoned(gpu, {4, 32}, DType::bf16);
  const AttentionShape bad_gqa{4, 3, 8, 0.35f};
  EXPECT_THROW(gpu.attention(qkv, kc, vc, bad_gqa, out), Error);
  Tensor out_bad = poisoned(gpu, {4, 31}, DType::bf16);
  EXPECT_THROW(gpu.attention(qkv, kc, vc, a, out_bad), Error);
  b.block_tables[paging.max_blocks] = paging.num_blocks;  // past the end of the cache
  gpu.set_batch(b);
  EXPECT_THROW(gpu.attention(qkv, kc, vc, a, out), Error);
}

}  // namespace
}  // namespace tpinfer::gputest
