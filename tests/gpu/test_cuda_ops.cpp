// The cuda backend's memory, transfers and row-wise ops against the cpu
// backend on the same (bf16-exact) random inputs. Outputs are poisoned with NaN
// first, so an element an op forgot to write fails. Tolerances are those of
// bf16 outputs: rounding alone is 2^-9 relative.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.hpp"
#include "base/half.hpp"
#include "gpu_test_util.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::gputest {
namespace {

constexpr double kBf16Tol = 1e-2;

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    be_ = std::make_unique<BackendPair>(gemv_rows(), gemm_tune());
  }
  // linear's rows up to which the cuda backend uses its own GEMV kernel.
  virtual int gemv_rows() const { return CudaBackendOptions{}.gemv_max_rows; }
  virtual bool gemm_tune() const { return CudaBackendOptions{}.gemm_tune; }
  Backend& cpu() { return *be_->cpu; }
  Backend& gpu() { return *be_->gpu; }
  // The same host values on both backends (f32 on cpu, bf16 on the GPU).
  std::pair<Tensor, Tensor> both(const std::vector<int64_t>& shape, const std::vector<float>& h) {
    return {put(cpu(), shape, h, DType::f32), put(gpu(), shape, h, DType::bf16)};
  }
  std::pair<Tensor, Tensor> both_poisoned(const std::vector<int64_t>& shape) {
    return {poisoned(cpu(), shape, DType::f32), poisoned(gpu(), shape, DType::bf16)};
  }
  void set_batch(const BatchLayout& b) {
    cpu().set_batch(b);
    gpu().set_batch(b);
  }
  void set_tokens(const std::vector<int32_t>& ids) { set_batch(test::single_token_batch(ids)); }

  std::unique_ptr<BackendPair> be_;
  std::mt19937_64 rng_{7070};
};

// ---------------------------------------------------------------- memory

TEST_F(CudaOps, AllocIsAlignedZeroedAndAccounted) {
  const auto used = [&] { return gpu().memory_info().used_bytes; };
  const auto arena_free = [&] { return gpu().memory_info().arena_free_bytes.value(); };
  EXPECT_EQ(gpu().name(), "cuda");
  EXPECT_EQ(gpu().compute_dtype(), DType::bf16);
  EXPECT_EQ(gpu().device_kind(), DeviceKind::cuda);
  ASSERT_TRUE(gpu().memory_info().arena_free_bytes.has_value());
  const int64_t used0 = used(), free0 = arena_free();
  EXPECT_GT(free0, int64_t{1} << 30);
  Tensor a = gpu().alloc({3, 5}, DType::bf16);
  Tensor b = gpu().alloc({7}, DType::f32);
  Tensor c = gpu().alloc({0, 4}, DType::f16);
  for (const Tensor* t : {&a, &b, &c}) EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 256, 0u);
  EXPECT_NE(a.data, b.data);
  EXPECT_NE(b.data, c.data);
  EXPECT_EQ(a.dtype, DType::bf16);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 5}));
  for (float v : get(gpu(), a)) EXPECT_EQ(v, 0.0f);
  for (float v : get(gpu(), b)) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(used() - used0, 3 * 256);
  EXPECT_EQ(free0 - arena_free(), 3 * 256);
  EXPECT_THROW(gpu().alloc({-1, 4}, DType::bf16), Error);
}

// A weight file's 16-bit values: bf16 bits into a bf16 tensor as they are
// (more than one staging chunk, so both halves of the pinned buffer serve),
// fp16 bits converted through float32; other source dtypes refused.
TEST_F(CudaOps, UploadBitsStagesStoredBitsAsTheyAre) {
  const int64_t n = (int64_t{9} << 20) + 3;
  std::vector<uint16_t> bits(static_cast<size_t>(n));
  std::vector<float> want(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    bits[i] = static_cast<uint16_t>((i * 2654435761u) >> 16) & 0xbfffu;  // finite, both signs
    want[i] = bf16_to_float(bits[i]);
  }
  Tensor t = gpu().alloc({n}, DType::bf16);
  gpu().upload_bits(t, bits.data(), DType::bf16);
  EXPECT_EQ(get(gpu(), t), want);
  const std::vector<float> small = {1.0f, -2.5f, 0.099609375f, 3.0e-5f};
  std::vector<uint16_t> half(small.size());
  for (size_t i = 0; i < small.size(); ++i) half[i] = float_to_fp16(small[i]);
  Tensor u = gpu().alloc({4}, DType::bf16);
  gpu().upload_bits(u, half.data(), DType::f16);
  const std::vector<float> got = get(gpu(), u);
  for (size_t i = 0; i < small.size(); ++i)
    EXPECT_EQ(got[i], bf16_to_float(float_to_bf16(fp16_to_float(half[i])))) << i;
  EXPECT_THROW(gpu().upload_bits(u, half.data(), DType::f32), Error);
}

TEST_F(CudaOps, AllocPastTheArenaThrowsBadAllocAndLeavesItUsable) {
  const auto arena_free = [&] { return gpu().memory_info().arena_free_bytes.value(); };
  const int64_t free0 = arena_free();
  EXPECT_THROW(gpu().alloc({free0 / 2 + 1024}, DType::f32), std::bad_alloc);
  EXPECT_EQ(arena_free(), free0);
  Tensor t = gpu().alloc({free0 / 4 - 64}, DType::f32);  // all but 256 bytes still fit
  EXPECT_EQ(arena_free(), 256);
  EXPECT_THROW(gpu().alloc({1024}, DType::f32), std::bad_alloc);
  (void)t;
}

TEST_F(CudaOps, UploadDownloadRoundTripsEveryDtype) {
  // 10M values: several staging chunks, and a tail.
  const size_t n = 10'000'123;
  std::vector<float> h(n);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (float& x : h) x = d(rng_);
  h[0] = kNaN;
  h[1] = std::numeric_limits<float>::infinity();
  h[n - 1] = kNaN;
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor t = put(gpu(), {static_cast<int64_t>(n)}, h, dt);
    const auto back = get(gpu(), t);
    ASSERT_EQ(back.size(), n);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const float want = dt == DType::f32    ? h[i]
                         : dt == DType::bf16 ? bf16_to_float(float_to_bf16(h[i]))
                                             : fp16_to_float(float_to_fp16(h[i]));
      const bool same = (std::isnan(want) && std::isnan(back[i])) || want == back[i];
      if (!same && bad++ < 3)
        ADD_FAILURE() << dtype_name(dt) << " element " << i << ": " << back[i] << " != " << want;
    }
    EXPECT_EQ(bad, 0u) << dtype_name(dt);
  }
}

// ---------------------------------------------------------------- linear

struct LinearCase {
  int64_t n, k, m;
  bool bias;
};

// Each shape with cuBLASLt alone (0), the default, and the GEMV kernel up to 8 rows.
class CudaLinear : public CudaOps,
                   public ::testing::WithParamInterface<std::tuple<LinearCase, int>> {
  int gemv_rows() const override { return std::get<1>(GetParam()); }
};

TEST_P(CudaLinear, MatchesCpu) {
  const auto [n, k, m, with_bias] = std::get<0>(GetParam());
  // Scaled like real activations and weights, so that sums of k terms stay O(1).
  const float wr = 1.0f / std::sqrt(static_cast<float>(k));
  const auto xh = random_bf16(rng_, n * k), wh = random_bf16(rng_, m * k, -wr, wr),
             bh = random_bf16(rng_, m, -0.5f, 0.5f);
  auto [xc, xg] = both({n, k}, xh);
  auto [wc, wg] = both({m, k}, wh);
  auto [bc, bg] = both({m}, bh);
  auto [oc, og] = both_poisoned({n, m});
  cpu().linear(xc, wc, with_bias ? &bc : nullptr, oc);
  gpu().linear(xg, wg, with_bias ? &bg : nullptr, og);
  expect_close(get(gpu(), og), get(cpu(), oc), kBf16Tol, "linear");
  // A second call with the cached plan and fresh values.
  const auto xh2 = random_bf16(rng_, n * k);
  cpu().upload(xc, xh2.data());
  gpu().upload(xg, xh2.data());
  cpu().linear(xc, wc, with_bias ? &bc : nullptr, oc);
  gpu().linear(xg, wg, with_bias ? &bg : nullptr, og);
  expect_close(get(gpu(), og), get(cpu(), oc), kBf16Tol, "linear, second call");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaLinear,
    ::testing::Combine(
        ::testing::Values(LinearCase{1, 64, 64, false}, LinearCase{1, 4096, 14336, true},
                          LinearCase{1, 14336, 4096, false}, LinearCase{7, 96, 4096, true},
                          LinearCase{7, 33, 40, true}, LinearCase{3, 96, 7, false},
                          LinearCase{64, 4096, 14336, false}, LinearCase{64, 14336, 4096, true},
                          LinearCase{512, 4096, 96, true}, LinearCase{512, 14336, 4096, false},
                          // the GEMV kernel's row counts, partial blocks of rows, long k
                          LinearCase{2, 4096, 1001, true}, LinearCase{4, 136, 6144, false},
                          LinearCase{8, 4104, 513, true}, LinearCase{5, 14336, 37, false}),
        ::testing::Values(0, 1, 8)),
    [](const auto& info) {
      const LinearCase& c = std::get<0>(info.param);
      return "n" + std::to_string(c.n) + "k" + std::to_string(c.k) + "m" + std::to_string(c.m) +
             (c.bias ? "Bias" : "") + "Gemv" + std::to_string(std::get<1>(info.param));
    });

// With --cuda-gemm-tune on: the first call (600 rows) times every 32-row
// bucket up to 512 and its own; later row counts take their bucket's winner or
// time a new bucket. Every result against the cpu backend.
class CudaLinearTuned : public CudaOps {
  bool gemm_tune() const override { return true; }
};

TEST_F(CudaLinearTuned, EveryBucketsWinnerMatchesCpu) {
  const int64_t k = 4096, m = 6144;
  const float wr = 1.0f / std::sqrt(static_cast<float>(k));
  const auto wh = random_bf16(rng_, m * k, -wr, wr), bh = random_bf16(rng_, m, -0.5f, 0.5f);
  auto [wc, wg] = both({m, k}, wh);
  auto [bc, bg] = both({m}, bh);
  for (const int64_t n : {600, 37, 256, 300, 512, 2, 2048, 1500}) {
    for (const bool with_bias : {false, true}) {
      const auto xh = random_bf16(rng_, n * k);
      auto [xc, xg] = both({n, k}, xh);
      auto [oc, og] = both_poisoned({n, m});
      cpu().linear(xc, wc, with_bias ? &bc : nullptr, oc);
      gpu().linear(xg, wg, with_bias ? &bg : nullptr, og);
      expect_close(get(gpu(), og), get(cpu(), oc), kBf16Tol,
                   "tuned linear n=" + std::to_string(n) + (with_bias ? " with bias" : ""));
    }
  }
}

TEST_F(CudaOps, LinearRejectsMismatchedShapesAndDtypes) {
  Tensor x = put(gpu(), {3, 8}, random_bf16(rng_, 24), DType::bf16);
  Tensor w = put(gpu(), {5, 9}, random_bf16(rng_, 45), DType::bf16);
  Tensor out = poisoned(gpu(), {3, 5}, DType::bf16);
  EXPECT_THROW(gpu().linear(x, w, nullptr, out), Error);
  Tensor w_ok = put(gpu(), {5, 8}, random_bf16(rng_, 40), DType::bf16);
  // float32 out (the logits) is taken without a bias, refused with one.
  Tensor out_f32 = poisoned(gpu(), {3, 5}, DType::f32);
  Tensor bias_ok = put(gpu(), {5}, random_bf16(rng_, 5), DType::bf16);
  EXPECT_THROW(gpu().linear(x, w_ok, &bias_ok, out_f32), Error);
  Tensor bias_bad = poisoned(gpu(), {4}, DType::bf16);
  EXPECT_THROW(gpu().linear(x, w_ok, &bias_bad, out), Error);
  Tensor sq = put(gpu(), {8, 8}, random_bf16(rng_, 64), DType::bf16);
  Tensor xs = put(gpu(), {8, 8}, random_bf16(rng_, 64), DType::bf16);
  EXPECT_THROW(gpu().linear(xs, sq, nullptr, xs), Error);  // out aliasing x
  try {
    gpu().linear(x, w, nullptr, out);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[5, 9]"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- rmsnorm

TEST_F(CudaOps, RmsNormMatchesCpu) {
  for (int64_t h : {37, 4096, 8200}) {  // scalar path, 16-byte path, > 1024 vectors
    const int64_t n = 5;
    auto xh = random_bf16(rng_, n * h, -3.0f, 5.0f);
    for (int64_t i = 0; i < h; ++i) xh[2 * h + i] = round_bf16(xh[2 * h + i] * 1000.0f);
    const auto wh = random_bf16(rng_, h, 0.5f, 1.5f);
    auto [xc, xg] = both({n, h}, xh);
    auto [wc, wg] = both({h}, wh);
    auto [oc, og] = both_poisoned({n, h});
    cpu().rmsnorm(xc, wc, 1e-5f, oc);
    gpu().rmsnorm(xg, wg, 1e-5f, og);
    const auto want = get(cpu(), oc);
    expect_close(get(gpu(), og), want, kBf16Tol, "rmsnorm h=" + std::to_string(h));
    gpu().rmsnorm(xg, wg, 1e-5f, xg);  // in place
    expect_close(get(gpu(), xg), want, kBf16Tol, "rmsnorm in place h=" + std::to_string(h));
  }
}

TEST_F(CudaOps, RmsNormEpsIsInsideTheSqrt) {
  const int64_t h = 64;
  std::vector<float> xh(h, round_bf16(1e-4f)), wh(h, 1.0f);
  Tensor x = put(gpu(), {1, h}, xh, DType::bf16), w = put(gpu(), {h}, wh, DType::bf16);
  Tensor out = poisoned(gpu(), {1, h}, DType::bf16);
  gpu().rmsnorm(x, w, 1e-6f, out);
  const double want = xh[0] / std::sqrt(static_cast<double>(xh[0]) * xh[0] + 1e-6);
  for (float v : get(gpu(), out)) EXPECT_NEAR(v, want, 1e-2 * want);
}

TEST_F(CudaOps, AddRmsNormMatchesCpu) {
  for (int64_t h : {65, 4096}) {
    const int64_t n = 6;
    const auto rh = random_bf16(rng_, n * h, -2.0f, 2.0f), xh = random_bf16(rng_, n * h),
               wh = random_bf16(rng_, h, 0.5f, 1.5f);
    auto [rc, rg] = both({n, h}, rh);
    auto [xc, xg] = both({n, h}, xh);
    auto [wc, wg] = both({h}, wh);
    auto [oc, og] = both_poisoned({n, h});
    cpu().add_rmsnorm(rc, xc, wc, 1e-6f, oc);
    gpu().add_rmsnorm(rg, xg, wg, 1e-6f, og);
    const std::string what = " h=" + std::to_string(h);
    expect_close(get(gpu(), rg), get(cpu(), rc), kBf16Tol, "add_rmsnorm residual" + what);
    expect_close(get(gpu(), og), get(cpu(), oc), kBf16Tol, "add_rmsnorm out" + what);
    // out aliasing x, as the model calls it.
    Tensor r2 = put(gpu(), {n, h}, rh, DType::bf16), x2 = put(gpu(), {n, h}, xh, DType::bf16);
    gpu().add_rmsnorm(r2, x2, wg, 1e-6f, x2);
    expect_close(get(gpu(), x2), get(cpu(), oc), kBf16Tol, "add_rmsnorm out over x" + what);
    EXPECT_THROW(gpu().add_rmsnorm(r2, xg, wg, 1e-6f, r2), Error);
  }
}

// ---------------------------------------------------------------- embed, silu, gather

TEST_F(CudaOps, EmbedReadsItsShardAndZeroesTheRest) {
  for (int64_t h : {9, 4096}) {
    const int64_t offset = 20, rows = 15;
    const auto tab = random_bf16(rng_, rows * h);
    auto [tc, tg] = both({rows, h}, tab);
    const std::vector<int32_t> ids = {0, 19, 20, 34, 35, 49, 27, 20};
    set_tokens(ids);
    auto [oc, og] = both_poisoned({static_cast<int64_t>(ids.size()), h});
    cpu().embed(tc, offset, oc);
    gpu().embed(tg, offset, og);
    EXPECT_EQ(get(gpu(), og), get(cpu(), oc)) << "h=" << h;  // a copy: exact
  }
}

TEST_F(CudaOps, SiluMulMatchesCpu) {
  for (int64_t inter : {37, 14336}) {
    const int64_t n = 3;
    auto gu = random_bf16(rng_, n * 2 * inter, -10.0f, 10.0f);
    gu[0] = -100.0f;  // e^100 overflows fp32: must give -0, not NaN
    gu[1] = 100.0f;
    auto [gc, gg] = both({n, 2 * inter}, gu);
    auto [oc, og] = both_poisoned({n, inter});
    cpu().silu_mul(gc, oc);
    gpu().silu_mul(gg, og);
    expect_close(get(gpu(), og), get(cpu(), oc), kBf16Tol, "silu_mul i=" + std::to_string(inter));
  }
}

TEST_F(CudaOps, GatherRowsCopiesTheLogitRows) {
  for (int64_t c : {13, 4096}) {
    const int64_t n = 7;
    auto [xc, xg] = both({n, c}, random_bf16(rng_, n * c));
    set_batch(test::three_sequences({3, 5, 6, 0}));
    auto [oc, og] = both_poisoned({4, c});
    cpu().gather_rows(xc, oc);
    gpu().gather_rows(xg, og);
    EXPECT_EQ(get(gpu(), og), get(cpu(), oc));
    Tensor bad = poisoned(gpu(), {3, c}, DType::bf16);
    EXPECT_THROW(gpu().gather_rows(xg, bad), Error);
  }
}

// ---------------------------------------------------------------- collectives

TEST_F(CudaOps, CollectivesOnOneRankAreIdentity) {
  const auto xh = random_bf16(rng_, 2 * 5);
  Tensor x = put(gpu(), {2, 5}, xh, DType::bf16);
  gpu().all_reduce_sum(x);
  EXPECT_EQ(get(gpu(), x), xh);
  Tensor out = poisoned(gpu(), {1, 2, 5}, DType::bf16);
  gpu().all_gather(x, out);
  EXPECT_EQ(get(gpu(), out), xh);
  Tensor out_bad = poisoned(gpu(), {2, 5}, DType::bf16);
  EXPECT_THROW(gpu().all_gather(x, out_bad), Error);
}

// ---------------------------------------------------------------- rope

struct RopeCase {
  int q_heads, kv_heads, head_dim;
};

class CudaRope : public CudaOps, public ::testing::WithParamInterface<RopeCase> {};

// A batch whose block tables map only the blocks the step's tokens write
// (rope reads positions and slots, never the tables), so that a position of
// 131000 needs no cache of 131000 slots. Blocks come in shuffled order.
BatchLayout sparse_batch(const std::vector<SeqSpec>& seqs, int bs, std::mt19937_64& rng,
                         int& num_blocks) {
  int max_blocks = 0, needed = 0;
  for (const auto& s : seqs) {
    max_blocks = std::max(max_blocks, (s.context() + bs - 1) / bs);
    needed += (s.n_query + bs - 1) / bs + 1;
  }
  num_blocks = needed + 2;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  size_t next = 0;
  BatchLayout b;
  b.block_size = bs;
  b.max_blocks_per_seq = max_blocks;
  b.block_tables.assign(seqs.size() * max_blocks, -1);
  b.query_start.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int pos = seqs[s].start; pos < seqs[s].context(); ++pos) {
      int32_t& blk = b.block_tables[s * max_blocks + pos / bs];
      if (blk < 0) blk = ids[next++];
      b.token_ids.push_back(1);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(blk * bs + pos % bs);
    }
    b.query_start.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.context_len.push_back(seqs[s].context());
  }
  return b;
}

TEST_P(CudaRope, MatchesCpuAndWritesOnlyTheTokensSlots) {
  const auto [qh, kvh, hd] = GetParam();
  const AttentionShape a{qh, kvh, hd, 1.0f / std::sqrt(static_cast<float>(hd))};
  const int bs = 16;
  // Positions from 0 to past sincosf's fast-path range (|angle| > 105615).
  const std::vector<SeqSpec> seqs = {{0, 5}, {97, 1}, {3000, 2}, {11, 1}, {131000, 3}};
  int num_blocks = 0;
  const BatchLayout b = sparse_batch(seqs, bs, rng_, num_blocks);
  set_batch(b);
  const auto inv = llama3_inv_freq(hd);
  const int64_t n = b.num_tokens(), row = (qh + 2 * kvh) * hd;
  auto [xc, xg] = both({n, row}, random_bf16(rng_, n * row, -2.0f, 2.0f));
  Tensor ic = put(cpu(), {hd / 2}, inv, DType::f32), ig = put(gpu(), {hd / 2}, inv, DType::f32);
  const std::vector<int64_t> cache = {num_blocks, bs, kvh, hd};
  auto [kc, kg] = both_poisoned(cache);
  auto [vc, vg] = both_poisoned(cache);
  cpu().rope_write_kv(xc, ic, a, kc, vc);
  gpu().rope_write_kv(xg, ig, a, kg, vg);
  expect_close(get(gpu(), xg), get(cpu(), xc), kBf16Tol, "rope qkv");
  expect_close(get(gpu(), kg), get(cpu(), kc), kBf16Tol, "rope k cache", /*nan_ok=*/true);
  expect_close(get(gpu(), vg), get(cpu(), vc), 0.0, "rope v cache", /*nan_ok=*/true);
}

// Into an fp8 cache: the rotated k rounded once from fp32 on both backends, so
// a code differs only where the two fp32 values straddle a rounding boundary
// (one fp8 step, 1/8 relative); v, exact in bf16, rounds to the same code.
TEST_P(CudaRope, WritesAnFp8CacheAsTheCpuDoes) {
  const auto [qh, kvh, hd] = GetParam();
  const AttentionShape a{qh, kvh, hd, 1.0f / std::sqrt(static_cast<float>(hd))};
  const int bs = 16;
  const std::vector<SeqSpec> seqs = {{0, 5}, {97, 1}, {3000, 2}, {131000, 3}};
  int num_blocks = 0;
  const BatchLayout b = sparse_batch(seqs, bs, rng_, num_blocks);
  set_batch(b);
  const auto inv = llama3_inv_freq(hd);
  const int64_t n = b.num_tokens(), row = (qh + 2 * kvh) * hd;
  // Magnitudes down to 1e-3: fp8 subnormals too.
  auto xh = random_bf16(rng_, n * row, -2.0f, 2.0f);
  for (size_t i = 0; i < xh.size(); ++i)
    if (i % 3 == 0) xh[i] = round_bf16(xh[i] * 1e-3f);
  auto [xc, xg] = both({n, row}, xh);
  Tensor ic = put(cpu(), {hd / 2}, inv, DType::f32), ig = put(gpu(), {hd / 2}, inv, DType::f32);
  const std::vector<int64_t> cache = {num_blocks, bs, kvh, hd};
  Tensor kc = poisoned(cpu(), cache, DType::fp8_e4m3), vc = poisoned(cpu(), cache, DType::fp8_e4m3);
  Tensor kg = poisoned(gpu(), cache, DType::fp8_e4m3), vg = poisoned(gpu(), cache, DType::fp8_e4m3);
  cpu().rope_write_kv(xc, ic, a, kc, vc);
  gpu().rope_write_kv(xg, ig, a, kg, vg);
  expect_close(get(gpu(), xg), get(cpu(), xc), kBf16Tol, "rope qkv (fp8 cache)");
  const auto kgot = get(gpu(), kg), kwant = get(cpu(), kc);
  expect_close(kgot, kwant, 0.13, "rope k cache (fp8)", /*nan_ok=*/true);
  size_t same = 0, written = 0;
  for (size_t i = 0; i < kwant.size(); ++i)
    if (!std::isnan(kwant[i])) {
      ++written;
      same += kgot[i] == kwant[i];
    }
  EXPECT_GE(same, written * 98 / 100) << same << " of " << written << " k codes equal";
  expect_close(get(gpu(), vg), get(cpu(), vc), 0.0, "rope v cache (fp8)", /*nan_ok=*/true);
}

INSTANTIATE_TEST_SUITE_P(HeadDims, CudaRope,
                         ::testing::Values(RopeCase{32, 8, 128}, RopeCase{8, 2, 64},
                                           RopeCase{4, 2, 16}, RopeCase{3, 1, 12}),
                         [](const auto& info) {
                           return "q" + std::to_string(info.param.q_heads) + "kv" +
                                  std::to_string(info.param.kv_heads) + "d" +
                                  std::to_string(info.param.head_dim);
                         });

TEST_F(CudaOps, RopeRejectsBadSlotsAndShapes) {
  const AttentionShape a{2, 1, 8, 0.35f};
  const std::vector<SeqSpec> seqs = {{0, 2}};
  Paging paging = make_paging(seqs, 4, rng_);
  BatchLayout b = make_batch(seqs, paging);
  const std::vector<int64_t> cache = {paging.num_blocks, 4, 1, 8};
  Tensor kc = poisoned(gpu(), cache, DType::bf16), vc = poisoned(gpu(), cache, DType::bf16);
  Tensor qkv = put(gpu(), {2, 32}, random_bf16(rng_, 64), DType::bf16);
  Tensor inv = put(gpu(), {4}, llama3_inv_freq(8), DType::f32);
  b.slot_mapping[1] = paging.num_blocks * 4;  // one past the end of the cache
  gpu().set_batch(b);
  EXPECT_THROW(gpu().rope_write_kv(qkv, inv, a, kc, vc), Error);
  gpu().set_batch(make_batch(seqs, paging));
  Tensor inv_bf16 = put(gpu(), {4}, llama3_inv_freq(8), DType::bf16);
  EXPECT_THROW(gpu().rope_write_kv(qkv, inv_bf16, a, kc, vc), Error);
  Tensor kc_bad = poisoned(gpu(), {paging.num_blocks, 4, 2, 8}, DType::bf16);
  EXPECT_THROW(gpu().rope_write_kv(qkv, inv, a, kc_bad, vc), Error);
  const AttentionShape bad_gqa{3, 2, 8, 0.35f};
  EXPECT_THROW(gpu().rope_write_kv(qkv, inv, bad_gqa, kc, vc), Error);
}

TEST_F(CudaOps, SetBatchRejectsInconsistentLayouts) {
  const std::vector<SeqSpec> seqs = {{0, 3}, {5, 1}};
  Paging paging = make_paging(seqs, 4, rng_);
  const BatchLayout good = make_batch(seqs, paging);
  EXPECT_NO_THROW(gpu().set_batch(good));
  BatchLayout b = good;
  b.positions.pop_back();
  EXPECT_THROW(gpu().set_batch(b), Error);
  b = good;
  b.query_start = {0, 4, 3};
  EXPECT_THROW(gpu().set_batch(b), Error);
  b = good;
  b.positions[3] = 6;
  EXPECT_THROW(gpu().set_batch(b), Error);
  b = good;
  b.context_len[0] = paging.max_blocks * 4 + 1;
  EXPECT_THROW(gpu().set_batch(b), Error);
  b = good;
  b.logit_rows = {4};
  EXPECT_THROW(gpu().set_batch(b), Error);
}

}  // namespace
}  // namespace tpinfer::gputest

namespace tpinfer::gputest {
namespace {

// The device-made random weights equal the host formula (random_tensor_values)
// for a column slice of a bf16 tensor, stored in bf16 and in f32.
TEST_F(CudaOps, FillRandomMatchesTheHostFormula) {
  ModelConfig c;
  c.dtype = DType::bf16;
  c.initializer_range = 0.02;
  const TensorShard shard{"model.layers.3.mlp.down_proj.weight", {96, 640}, {0, 160}, {96, 320}};
  const RandomFill f = random_fill_of(c, shard, 42);
  const std::vector<float> want = random_tensor_values(c, shard, 42);
  for (DType dt : {DType::bf16, DType::f32}) {
    Tensor t = poisoned(gpu(), {96, 320}, dt);
    cuda_fill_random(gpu(), t, f);
    const std::vector<float> got = get(gpu(), t);
    ASSERT_EQ(got.size(), want.size());
    // Double-precision log/cos on the device may differ from the host's by an
    // ulp, which can move a bf16 rounding: allow a handful of one-ulp changes.
    size_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << i;
      if (got[i] != want[i]) {
        ++differ;
        EXPECT_NEAR(got[i], want[i], std::fabs(want[i]) * 1e-2) << i;
      }
    }
    EXPECT_LE(differ, want.size() / 1000) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace tpinfer::gputest

namespace tpinfer::gputest {
namespace {

TEST_F(CudaOps, ArgmaxRowsMatchesCpu) {
  const int64_t n = 5, cols = 50000, valid = 49990;
  std::vector<float> host = random_bf16(rng_, n * cols, -8.0f, 8.0f);
  host[2 * cols + 7] = host[2 * cols + 9000] = 100.0f;  // a tie: the lower column wins
  host[3 * cols + valid + 3] = 1000.0f;                 // past valid_cols: ignored
  auto [lc, lg] = both({n, cols}, host);
  Tensor oc = poisoned(cpu(), {n, 2}, DType::f32), og = poisoned(gpu(), {n, 2}, DType::f32);
  cpu().argmax_rows(lc, valid, 1000, oc);
  gpu().argmax_rows(lg, valid, 1000, og);
  EXPECT_EQ(get(cpu(), oc), get(gpu(), og));
  EXPECT_EQ(get(gpu(), og)[5], 1007.0f);
}

}  // namespace
}  // namespace tpinfer::gputest
