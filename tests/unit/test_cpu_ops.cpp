// The cpu backend's ops against naive references: plain double-precision loops
// that follow the op's definition (no BLAS, no paging, no shared code with the
// backend). Outputs are poisoned with NaN before each op so that an element the
// op forgot to write fails the comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../paged_batch.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/collectives.hpp"
#include "base/error.hpp"
#include "base/fp8.hpp"
#include "base/half.hpp"

namespace tpinfer {
namespace {

using test::make_batch;
using test::make_paging;
using test::Paging;
using test::SeqSpec;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// |got - ref| <= rtol * (|ref| + rms(ref)) for every element; NaN never passes.
void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double ss = 0.0;
  for (double r : ref) ss += r * r;
  const double rms = ref.empty() ? 0.0 : std::sqrt(ss / static_cast<double>(ref.size()));
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - ref[i]);
    if (!(err <= rtol * (std::abs(ref[i]) + rms))) {
      if (bad < 5)
        ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << ref[i];
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off";
}

class CpuOps : public ::testing::Test {
 protected:
  void SetUp() override { be_ = make_cpu_backend(single_process_collectives(), 2); }

  std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng_);
    return v;
  }
  Tensor tensor(const std::vector<int64_t>& shape, const std::vector<float>& host) {
    Tensor t = be_->alloc(shape, DType::f32);
    EXPECT_EQ(static_cast<size_t>(t.numel()), host.size());
    be_->upload(t, host.data());
    return t;
  }
  Tensor poisoned(const std::vector<int64_t>& shape) {
    Tensor t = be_->alloc(shape, DType::f32);
    std::vector<float> nan(static_cast<size_t>(t.numel()), kNaN);
    be_->upload(t, nan.data());
    return t;
  }
  std::vector<float> get(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    be_->download(t, v.data());
    return v;
  }
  void set_tokens(const std::vector<int32_t>& ids) {
    be_->set_batch(test::single_token_batch(ids));
  }

  std::unique_ptr<Backend> be_;
  std::mt19937_64 rng_{20240611};
};

// ---------------------------------------------------------------- memory

TEST_F(CpuOps, AllocIsAlignedZeroedAndRoundTrips) {
  EXPECT_EQ(be_->name(), "cpu");
  EXPECT_EQ(be_->device_kind(), DeviceKind::cpu);
  EXPECT_FALSE(be_->memory_info().arena_free_bytes.has_value());
  EXPECT_EQ(be_->compute_dtype(), DType::f32);
  Tensor t = be_->alloc({3, 5}, DType::f32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 5}));
  for (float v : get(t)) EXPECT_EQ(v, 0.0f);
  const auto host = random(15);
  be_->upload(t, host.data());
  EXPECT_EQ(get(t), host);
  Tensor odd = be_->alloc({7}, DType::f32);  // each allocation aligned, not just the first
  EXPECT_EQ(reinterpret_cast<uintptr_t>(odd.data) % 64, 0u);
  EXPECT_NE(odd.data, t.data);
}

// A weight file's 16-bit values, widened into the float32 tensor (and through
// float32 into an fp8 one); other source dtypes are refused.
TEST_F(CpuOps, UploadBitsWidensBf16AndFp16) {
  const std::vector<float> want = {1.0f, -2.5f, 0.099609375f, 65504.0f, -0.0f};
  std::vector<uint16_t> bf(want.size()), half(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    bf[i] = float_to_bf16(want[i]);
    half[i] = float_to_fp16(want[i]);
  }
  Tensor t = be_->alloc({5}, DType::f32);
  be_->upload_bits(t, bf.data(), DType::bf16);
  std::vector<float> got = get(t);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], bf16_to_float(bf[i])) << i;
  be_->upload_bits(t, half.data(), DType::f16);
  got = get(t);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], fp16_to_float(half[i])) << i;
  EXPECT_TRUE(std::signbit(got[4]));
  Tensor kv = be_->alloc({5}, DType::fp8_e4m3);
  be_->upload_bits(kv, bf.data(), DType::bf16);
  EXPECT_EQ(get(kv), (std::vector<float>{1.0f, -2.5f, 0.1015625f, 448.0f, -0.0f}));
  try {
    be_->upload_bits(t, bf.data(), DType::f32);
    FAIL() << "a float32 source was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rule: bfloat16 or float16 bits"), std::string::npos)
        << e.what();
  }
}

TEST_F(CpuOps, AllocRejectsOtherDtypes) {
  EXPECT_THROW(be_->alloc({4}, DType::bf16), Error);
  EXPECT_THROW(be_->alloc({4}, DType::f16), Error);
  Tensor kv = be_->alloc({4}, DType::fp8_e4m3);  // the KV cache's storage type
  const std::vector<float> in = {0.1f, -3.3f, 1000.0f, 0.0f};
  be_->upload(kv, in.data());
  EXPECT_EQ(get(kv), (std::vector<float>{0.1015625f, -3.25f, 448.0f, 0.0f}));
  EXPECT_THROW(be_->alloc({-1, 4}, DType::f32), Error);
}

TEST_F(CpuOps, FirstRowsIsAViewOfTheLeadingRows) {
  Tensor t = tensor({4, 3}, random(12));
  Tensor v = t.first_rows(2);
  EXPECT_EQ(v.data, t.data);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{2, 3}));
  const auto all = get(t), head = get(v);
  EXPECT_EQ(head, std::vector<float>(all.begin(), all.begin() + 6));
  EXPECT_EQ(t.first_rows(0).numel(), 0);
  EXPECT_EQ(t.first_rows(4).shape, t.shape);
  EXPECT_THROW(t.first_rows(5), Error);
  EXPECT_THROW(t.first_rows(-1), Error);
  EXPECT_THROW(Tensor{}.first_rows(0), Error);
}

// ---------------------------------------------------------------- linear

struct LinearCase {
  int64_t n, k, m;
  bool bias;
};

class CpuLinear : public CpuOps, public ::testing::WithParamInterface<LinearCase> {};

TEST_P(CpuLinear, MatchesNaiveProduct) {
  const auto [n, k, m, with_bias] = GetParam();
  const auto xh = random(n * k), wh = random(m * k), bh = random(m);
  Tensor x = tensor({n, k}, xh), w = tensor({m, k}, wh), b = tensor({m}, bh);
  Tensor out = poisoned({n, m});
  be_->linear(x, w, with_bias ? &b : nullptr, out);
  std::vector<double> ref(n * m);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < m; ++j) {
      double s = with_bias ? bh[j] : 0.0;
      for (int64_t i = 0; i < k; ++i) s += static_cast<double>(xh[t * k + i]) * wh[j * k + i];
      ref[t * m + j] = s;
    }
  expect_close(get(out), ref, 1e-5, "linear");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuLinear,
                         ::testing::Values(LinearCase{1, 33, 7, false}, LinearCase{1, 33, 7, true},
                                           LinearCase{3, 33, 40, false},
                                           LinearCase{3, 33, 40, true}, LinearCase{17, 33, 1, true},
                                           LinearCase{17, 64, 129, false},
                                           LinearCase{64, 256, 96, true},
                                           LinearCase{64, 128, 77, true}),
                         [](const auto& info) {
                           const LinearCase& c = info.param;
                           return "n" + std::to_string(c.n) + "k" + std::to_string(c.k) + "m" +
                                  std::to_string(c.m) + (c.bias ? "Bias" : "");
                         });

TEST_F(CpuOps, LinearRejectsMismatchedShapes) {
  Tensor x = tensor({3, 8}, random(24)), w = tensor({5, 9}, random(45));
  Tensor out = poisoned({3, 5});
  EXPECT_THROW(be_->linear(x, w, nullptr, out), Error);
  Tensor w_ok = tensor({5, 8}, random(40)), out_bad = poisoned({3, 6}), bias_bad = poisoned({4});
  EXPECT_THROW(be_->linear(x, w_ok, nullptr, out_bad), Error);
  EXPECT_THROW(be_->linear(x, w_ok, &bias_bad, out), Error);
  try {
    be_->linear(x, w, nullptr, out);
    ADD_FAILURE() << "linear accepted w [5, 9] for x [3, 8]";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5, 9]"), std::string::npos) << msg;
  }
}

// ---------------------------------------------------------------- rmsnorm

std::vector<double> ref_rmsnorm(const std::vector<float>& x, const std::vector<float>& w,
                                double eps) {
  const size_t h = w.size(), n = x.size() / h;
  std::vector<double> out(x.size());
  for (size_t t = 0; t < n; ++t) {
    double ss = 0.0;
    for (size_t i = 0; i < h; ++i) ss += static_cast<double>(x[t * h + i]) * x[t * h + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(h) + eps);
    for (size_t i = 0; i < h; ++i) out[t * h + i] = x[t * h + i] * inv * w[i];
  }
  return out;
}

TEST_F(CpuOps, RmsNormMatchesReference) {
  for (int64_t h : {37, 256}) {
    const int64_t n = 5;
    // An offset and a large spread: the mean of squares is dominated by a few rows.
    auto xh = random(n * h, -3.0f, 5.0f);
    for (int64_t i = 0; i < h; ++i) xh[2 * h + i] *= 1000.0f;
    const auto wh = random(h, 0.5f, 1.5f);
    Tensor x = tensor({n, h}, xh), w = tensor({h}, wh), out = poisoned({n, h});
    be_->rmsnorm(x, w, 1e-5f, out);
    expect_close(get(out), ref_rmsnorm(xh, wh, 1e-5), 1e-6, "rmsnorm h=" + std::to_string(h));
    be_->rmsnorm(x, w, 1e-5f, x);  // in place
    expect_close(get(x), ref_rmsnorm(xh, wh, 1e-5), 1e-6, "rmsnorm in place");
  }
}

TEST_F(CpuOps, RmsNormEpsIsInsideTheSqrt) {
  // A tiny row: eps dominates, so eps outside the sqrt (or missing) is far off.
  const int64_t h = 8;
  std::vector<float> xh(h, 1e-4f), wh(h, 1.0f);
  Tensor x = tensor({1, h}, xh), w = tensor({h}, wh), out = poisoned({1, h});
  be_->rmsnorm(x, w, 1e-6f, out);
  const double want = 1e-4 / std::sqrt(1e-8 + 1e-6);
  for (float v : get(out)) EXPECT_NEAR(v, want, 1e-6 * want);
}

TEST_F(CpuOps, AddRmsNormUpdatesResidualAndNormalises) {
  const int64_t n = 4, h = 65;
  const auto rh = random(n * h, -2.0f, 2.0f), xh = random(n * h), wh = random(h, 0.5f, 1.5f);
  Tensor r = tensor({n, h}, rh), x = tensor({n, h}, xh), w = tensor({h}, wh);
  Tensor out = poisoned({n, h});
  be_->add_rmsnorm(r, x, w, 1e-6f, out);
  std::vector<float> sum(n * h);
  std::vector<double> sum_d(n * h);
  for (int64_t i = 0; i < n * h; ++i) {
    sum[i] = rh[i] + xh[i];  // fp32 add, as the residual stream is fp32
    sum_d[i] = sum[i];
  }
  expect_close(get(r), sum_d, 0.0, "add_rmsnorm residual");
  expect_close(get(out), ref_rmsnorm(sum, wh, 1e-6), 1e-6, "add_rmsnorm out");

  // out aliasing x is allowed; out aliasing residual is not.
  Tensor r2 = tensor({n, h}, rh), x2 = tensor({n, h}, xh);
  be_->add_rmsnorm(r2, x2, w, 1e-6f, x2);
  expect_close(get(x2), ref_rmsnorm(sum, wh, 1e-6), 1e-6, "add_rmsnorm out aliasing x");
  EXPECT_THROW(be_->add_rmsnorm(r2, x, w, 1e-6f, r2), Error);
  Tensor w_bad = tensor({h - 1}, random(h - 1));
  EXPECT_THROW(be_->add_rmsnorm(r, x, w_bad, 1e-6f, out), Error);
}

// ---------------------------------------------------------------- embed

TEST_F(CpuOps, EmbedReadsItsShardAndZeroesTheRest) {
  // Vocab 50 split so that this rank holds ids [20, 35).
  const int64_t offset = 20, rows = 15, h = 9;
  const auto tab = random(rows * h);
  Tensor table = tensor({rows, h}, tab);
  const std::vector<int32_t> ids = {0, 19, 20, 34, 35, 49, 27, 20};
  set_tokens(ids);
  Tensor out = poisoned({static_cast<int64_t>(ids.size()), h});
  be_->embed(table, offset, out);
  const auto got = get(out);
  for (size_t t = 0; t < ids.size(); ++t) {
    const int64_t r = ids[t] - offset;
    for (int64_t i = 0; i < h; ++i) {
      const float want = (r >= 0 && r < rows) ? tab[r * h + i] : 0.0f;
      EXPECT_EQ(got[t * h + i], want) << "token " << t << " (id " << ids[t] << ") col " << i;
    }
  }
  // Unsharded: offset 0 and every id in range.
  set_tokens({14, 0, 7});
  Tensor out2 = poisoned({3, h});
  be_->embed(table, 0, out2);
  const auto got2 = get(out2);
  for (int64_t i = 0; i < h; ++i) {
    EXPECT_EQ(got2[i], tab[14 * h + i]);
    EXPECT_EQ(got2[h + i], tab[i]);
    EXPECT_EQ(got2[2 * h + i], tab[7 * h + i]);
  }
  Tensor wrong_rows = poisoned({2, h});
  EXPECT_THROW(be_->embed(table, 0, wrong_rows), Error);
}

// ---------------------------------------------------------------- silu_mul, gather_rows

TEST_F(CpuOps, SiluMulMatchesReference) {
  const int64_t n = 3, inter = 37;
  auto gu = random(n * 2 * inter, -10.0f, 10.0f);
  gu[0] = -100.0f;  // e^100 overflows fp32: must give -0, not NaN
  gu[1] = 100.0f;
  Tensor g = tensor({n, 2 * inter}, gu), out = poisoned({n, inter});
  be_->silu_mul(g, out);
  std::vector<double> ref(n * inter);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < inter; ++j) {
      const double gate = gu[t * 2 * inter + j], up = gu[t * 2 * inter + inter + j];
      ref[t * inter + j] = gate / (1.0 + std::exp(-gate)) * up;
    }
  expect_close(get(out), ref, 1e-6, "silu_mul");
  Tensor out_bad = poisoned({n, inter + 1});
  EXPECT_THROW(be_->silu_mul(g, out_bad), Error);
}

TEST_F(CpuOps, GatherRowsCopiesTheLogitRows) {
  const int64_t n = 7, c = 13;
  const auto xh = random(n * c);
  Tensor x = tensor({n, c}, xh);
  const BatchLayout b = test::three_sequences({3, 5, 6});
  be_->set_batch(b);
  Tensor out = poisoned({3, c});
  be_->gather_rows(x, out);
  const auto got = get(out);
  for (int j = 0; j < 3; ++j)
    for (int64_t i = 0; i < c; ++i)
      EXPECT_EQ(got[j * c + i], xh[b.logit_rows[j] * c + i]) << "row " << j;
  Tensor out_bad = poisoned({2, c});
  EXPECT_THROW(be_->gather_rows(x, out_bad), Error);
}

// ---------------------------------------------------------------- collectives

TEST_F(CpuOps, CollectivesOnOneRankAreIdentity) {
  const auto xh = random(2 * 5);
  Tensor x = tensor({2, 5}, xh);
  be_->all_reduce_sum(x);
  EXPECT_EQ(get(x), xh);
  Tensor out = poisoned({1, 2, 5});
  be_->all_gather(x, out);
  EXPECT_EQ(get(out), xh);
  Tensor out_bad = poisoned({2, 5});
  EXPECT_THROW(be_->all_gather(x, out_bad), Error);
}

// ---------------------------------------------------------------- paged batches

// Rotate-half RoPE of one head, written as the 2x2 rotation of each pair
// (i, i + d/2) by angle position * inv_freq[i]. The angle is the fp32 product,
// as Hugging Face forms it; cos and sin are then taken in double.
void ref_rope_head(std::vector<double>& head, int pos, const std::vector<float>& inv_freq) {
  const size_t half = head.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    const double angle = static_cast<float>(pos) * inv_freq[i];
    const double rot[2][2] = {{std::cos(angle), -std::sin(angle)},
                              {std::sin(angle), std::cos(angle)}};
    const double a = head[i], b = head[i + half];
    head[i] = rot[0][0] * a + rot[0][1] * b;
    head[i + half] = rot[1][0] * a + rot[1][1] * b;
  }
}

// Attention of one query head over the plain (unpaged) keys 0..pos of its sequence;
// keys[j] and values[j] are the head_dim vectors of position j for the right kv head.
std::vector<double> ref_attend(const std::vector<double>& q,
                               const std::vector<std::vector<double>>& keys,
                               const std::vector<std::vector<double>>& values, int pos,
                               double scale) {
  std::vector<double> score(pos + 1);
  for (int j = 0; j <= pos; ++j) {
    double s = 0.0;
    for (size_t d = 0; d < q.size(); ++d) s += q[d] * keys[j][d];
    score[j] = s * scale;
  }
  const double mx = *std::max_element(score.begin(), score.end());
  double sum = 0.0;
  for (double& s : score) sum += (s = std::exp(s - mx));
  std::vector<double> out(q.size(), 0.0);
  for (int j = 0; j <= pos; ++j)
    for (size_t d = 0; d < q.size(); ++d) out[d] += score[j] / sum * values[j][d];
  return out;
}

std::vector<float> rope_inv_freq(int head_dim, double theta) {
  std::vector<float> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i)
    f[i] = static_cast<float>(1.0 / std::pow(theta, 2.0 * i / head_dim));
  return f;
}

// Llama 3's frequency-dependent scaling (factor 8, window 1..4, original context 64
// so that all three bands occur at a small head_dim).
std::vector<float> llama3_inv_freq(int head_dim) {
  const double factor = 8.0, low = 1.0, high = 4.0, orig = 64.0, pi = std::acos(-1.0);
  std::vector<float> f = rope_inv_freq(head_dim, 500000.0);
  for (float& x : f) {
    const double wavelen = 2.0 * pi / x;
    if (wavelen < orig / high) continue;
    if (wavelen > orig / low) {
      x = static_cast<float>(x / factor);
    } else {
      const double smooth = (orig / wavelen - low) / (high - low);
      x = static_cast<float>((1.0 - smooth) * x / factor + smooth * x);
    }
  }
  return f;
}

// ---------------------------------------------------------------- rope_write_kv

class CpuRope : public CpuOps, public ::testing::WithParamInterface<bool> {};

TEST_P(CpuRope, RotatesQAndKAndWritesTheCache) {
  const bool llama3 = GetParam();
  const AttentionShape a{4, 2, 16, 0.25f};
  const int hd = 16, bs = 4;
  const std::vector<SeqSpec> seqs = {{0, 3}, {97, 1}, {3000, 2}, {11, 1}};
  Paging paging = make_paging(seqs, bs, rng_);
  BatchLayout b = make_batch(seqs, paging);
  be_->set_batch(b);
  const auto inv = llama3 ? llama3_inv_freq(hd) : rope_inv_freq(hd, 10000.0);
  const int64_t n = b.num_tokens(), heads = a.q_heads + 2 * a.kv_heads, row = heads * hd;
  const auto xh = random(n * row, -2.0f, 2.0f);
  Tensor qkv = tensor({n, row}, xh), inv_t = tensor({hd / 2}, inv);
  const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, a.kv_heads, hd};
  Tensor kc = poisoned(cache_shape), vc = poisoned(cache_shape);
  be_->rope_write_kv(qkv, inv_t, a, kc, vc);

  std::vector<double> ref(xh.begin(), xh.end());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < a.q_heads + a.kv_heads; ++h) {  // v heads are not rotated
      std::vector<double> head(ref.begin() + t * row + h * hd,
                               ref.begin() + t * row + (h + 1) * hd);
      ref_rope_head(head, b.positions[t], inv);
      std::copy(head.begin(), head.end(), ref.begin() + t * row + h * hd);
    }
  expect_close(get(qkv), ref, 2e-6, "rope_write_kv qkv");

  // Written slots hold the rotated k and the plain v; every other slot is untouched.
  const auto kg = get(kc), vg = get(vc);
  const int64_t kvw = a.kv_heads * hd;
  std::vector<int> owner(paging.num_blocks * bs, -1);
  for (int64_t t = 0; t < n; ++t) owner[b.slot_mapping[t]] = static_cast<int>(t);
  for (int64_t slot = 0; slot < paging.num_blocks * bs; ++slot) {
    const int t = owner[slot];
    std::vector<float> kgot(kg.begin() + slot * kvw, kg.begin() + (slot + 1) * kvw);
    std::vector<float> vgot(vg.begin() + slot * kvw, vg.begin() + (slot + 1) * kvw);
    if (t < 0) {
      for (int64_t i = 0; i < kvw; ++i) {
        ASSERT_TRUE(std::isnan(kgot[i])) << "k slot " << slot << " written";
        ASSERT_TRUE(std::isnan(vgot[i])) << "v slot " << slot << " written";
      }
      continue;
    }
    const int64_t k0 = t * row + a.q_heads * hd;
    expect_close(kgot, std::vector<double>(ref.begin() + k0, ref.begin() + k0 + kvw), 2e-6,
                 "k cache slot " + std::to_string(slot));
    expect_close(vgot, std::vector<double>(ref.begin() + k0 + kvw, ref.begin() + k0 + 2 * kvw), 0.0,
                 "v cache slot " + std::to_string(slot));
  }
}

INSTANTIATE_TEST_SUITE_P(InvFreq, CpuRope, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Llama3" : "Plain"; });

TEST_F(CpuOps, RopeRejectsBadSlotsAndShapes) {
  const AttentionShape a{2, 1, 8, 0.35f};
  const std::vector<SeqSpec> seqs = {{0, 2}};
  Paging paging = make_paging(seqs, 4, rng_);
  BatchLayout b = make_batch(seqs, paging);
  const std::vector<int64_t> cache_shape = {paging.num_blocks, 4, 1, 8};
  Tensor kc = poisoned(cache_shape), vc = poisoned(cache_shape);
  Tensor qkv = tensor({2, 32}, random(64)), inv = tensor({4}, rope_inv_freq(8, 10000.0));
  b.slot_mapping[1] = paging.num_blocks * 4;  // one past the end of the cache
  be_->set_batch(b);
  EXPECT_THROW(be_->rope_write_kv(qkv, inv, a, kc, vc), Error);
  b = make_batch(seqs, paging);
  be_->set_batch(b);
  Tensor inv_bad = tensor({8}, random(8));
  EXPECT_THROW(be_->rope_write_kv(qkv, inv_bad, a, kc, vc), Error);
  Tensor kc_bad = poisoned({paging.num_blocks, 4, 2, 8});
  EXPECT_THROW(be_->rope_write_kv(qkv, inv, a, kc_bad, vc), Error);
  const AttentionShape bad_gqa{3, 2, 8, 0.35f};
  EXPECT_THROW(be_->rope_write_kv(qkv, inv, bad_gqa, kc, vc), Error);
}

// ---------------------------------------------------------------- attention

struct AttentionCase {
  int q_heads, kv_heads, block_size;
};

class CpuAttention : public CpuOps, public ::testing::WithParamInterface<AttentionCase> {};

// A mixed batch straight from a filled cache: a prefill from position 0, decodes
// at several context lengths (including a context of one), and a chunked prefill
// that continues a cached prefix. The reference attends over plain per-sequence
// K/V arrays; the cache holds the same values behind shuffled block tables.
TEST_P(CpuAttention, MatchesUnpagedReference) {
  const auto [qh, kvh, bs] = GetParam();
  const int hd = 32;
  const AttentionShape a{qh, kvh, hd, 0.3f};  // not 1/sqrt(hd): the op must use a.scale
  const std::vector<SeqSpec> seqs = {{0, 9}, {20, 1}, {6, 5}, {0, 1}, {37, 1}, {15, 17}};
  Paging paging = make_paging(seqs, bs, rng_);
  BatchLayout b = make_batch(seqs, paging);
  be_->set_batch(b);

  // Plain K/V per sequence: [position][kv head] -> head_dim values.
  std::vector<std::vector<std::vector<std::vector<double>>>> K(seqs.size()), V(seqs.size());
  const int64_t kvw = kvh * hd, slots = static_cast<int64_t>(paging.num_blocks) * bs;
  // Slots that no context position uses stay NaN: reading them poisons the output.
  std::vector<float> kcache(slots * kvw, kNaN), vcache(slots * kvw, kNaN);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int j = 0; j < seqs[s].context(); ++j) {
      const auto kh = random(kvw), vh = random(kvw, -3.0f, 3.0f);
      K[s].emplace_back();
      V[s].emplace_back();
      for (int g = 0; g < kvh; ++g) {
        K[s][j].emplace_back(kh.begin() + g * hd, kh.begin() + (g + 1) * hd);
        V[s][j].emplace_back(vh.begin() + g * hd, vh.begin() + (g + 1) * hd);
      }
      const int64_t slot = paging.slot(static_cast<int>(s), j);
      std::copy(kh.begin(), kh.end(), kcache.begin() + slot * kvw);
      std::copy(vh.begin(), vh.end(), vcache.begin() + slot * kvw);
    }
  }
  const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, kvh, hd};
  Tensor kc = tensor(cache_shape, kcache), vc = tensor(cache_shape, vcache);

  // The k/v parts of qkv are NaN because attention must read K/V from the cache
  // only. The last sequence's q is huge: scores in the hundreds overflow exp()
  // in fp32 unless the softmax subtracts the maximum.
  const int64_t n = b.num_tokens(), row = (qh + 2 * kvh) * hd;
  std::vector<float> xh(n * row, kNaN);
  for (int64_t t = 0; t < n; ++t) {
    const float range = t >= b.query_start[seqs.size() - 1] ? 300.0f : 4.0f;
    const auto q = random(qh * hd, -range, range);
    std::copy(q.begin(), q.end(), xh.begin() + t * row);
  }
  Tensor qkv = tensor({n, row}, xh), out = poisoned({n, qh * hd});
  be_->attention(qkv, kc, vc, a, out);

  std::vector<double> ref(n * qh * hd);
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int t = b.query_start[s]; t < b.query_start[s + 1]; ++t)
      for (int h = 0; h < qh; ++h) {
        const int g = h / (qh / kvh);
        std::vector<std::vector<double>> keys, values;
        for (int j = 0; j < seqs[s].context(); ++j) {
          keys.push_back(K[s][j][g]);
          values.push_back(V[s][j][g]);
        }
        const std::vector<double> q(xh.begin() + t * row + h * hd,
                                    xh.begin() + t * row + (h + 1) * hd);
        const auto o = ref_attend(q, keys, values, b.positions[t], a.scale);
        std::copy(o.begin(), o.end(), ref.begin() + (t * qh + h) * hd);
      }
  // Scores in the hundreds carry fp32 rounding errors of ~1e-5 in absolute terms,
  // which exp() turns into relative errors of the weights: a looser bound there.
  const auto got = get(out);
  const auto split = static_cast<ptrdiff_t>(b.query_start[seqs.size() - 1] * qh * hd);
  expect_close(std::vector<float>(got.begin(), got.begin() + split),
               std::vector<double>(ref.begin(), ref.begin() + split), 1e-5, "attention");
  expect_close(std::vector<float>(got.begin() + split, got.end()),
               std::vector<double>(ref.begin() + split, ref.end()), 1e-3,
               "attention with large scores");
}

INSTANTIATE_TEST_SUITE_P(Layouts, CpuAttention,
                         ::testing::Values(AttentionCase{4, 2, 4}, AttentionCase{4, 2, 16},
                                           AttentionCase{4, 1, 4}, AttentionCase{4, 1, 16},
                                           AttentionCase{4, 4, 4}),
                         [](const auto& info) {
                           return "q" + std::to_string(info.param.q_heads) + "kv" +
                                  std::to_string(info.param.kv_heads) + "bs" +
                                  std::to_string(info.param.block_size);
                         });

// An fp8 KV cache: rope_write_kv stores each k and v value rounded once to
// e4m3 (the fp32 cache's value, rounded), and attention over it gives exactly
// what it gives over an fp32 cache holding the decoded values.
TEST_F(CpuOps, Fp8CacheStoresRoundedValuesThatAttentionReads) {
  const int qh = 4, kvh = 2, hd = 16, bs = 4;
  const AttentionShape a{qh, kvh, hd, 0.25f};
  const std::vector<SeqSpec> seqs = {{0, 9}, {20, 1}, {6, 5}};
  Paging paging = make_paging(seqs, bs, rng_);
  const BatchLayout b = make_batch(seqs, paging);
  be_->set_batch(b);
  const int64_t n = b.num_tokens(), row = (qh + 2 * kvh) * hd;
  const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, kvh, hd};
  // Magnitudes from 1e-4 to 600: subnormal, normal and saturated fp8 values.
  std::vector<float> xh = random(n * row);
  for (size_t i = 0; i < xh.size(); ++i) xh[i] *= std::pow(10.0f, static_cast<float>(i % 7) - 4);
  xh[row - 1] = 600.0f;  // a v value past 448
  Tensor inv = tensor({hd / 2}, llama3_inv_freq(hd));
  Tensor q32 = tensor({n, row}, xh), q8 = tensor({n, row}, xh);
  Tensor k32 = be_->alloc(cache_shape, DType::f32), v32 = be_->alloc(cache_shape, DType::f32);
  Tensor k8 = be_->alloc(cache_shape, DType::fp8_e4m3),
         v8 = be_->alloc(cache_shape, DType::fp8_e4m3);
  EXPECT_EQ(k8.dtype, DType::fp8_e4m3);
  be_->rope_write_kv(q32, inv, a, k32, v32);
  be_->rope_write_kv(q8, inv, a, k8, v8);
  EXPECT_EQ(get(q32), get(q8)) << "the rotated q does not depend on the cache type";
  for (auto [wide, narrow] : {std::pair{&k32, &k8}, std::pair{&v32, &v8}}) {
    const auto w = get(*wide), f = get(*narrow);
    int bad = 0;
    for (size_t i = 0; i < w.size(); ++i)
      if (f[i] != fp8_e4m3_to_float(float_to_fp8_e4m3(w[i])) && bad++ < 5)
        ADD_FAILURE() << "cache element " << i << ": " << f[i] << " from " << w[i];
    EXPECT_EQ(bad, 0);
  }
  // Attention over the fp8 cache against an fp32 cache of the decoded values.
  Tensor kd = tensor(cache_shape, get(k8)), vd = tensor(cache_shape, get(v8));
  Tensor out8 = poisoned({n, qh * hd}), outd = poisoned({n, qh * hd});
  be_->attention(q8, k8, v8, a, out8);
  be_->attention(q8, kd, vd, a, outd);
  EXPECT_EQ(get(out8), get(outd));
  for (float v : get(out8)) ASSERT_TRUE(std::isfinite(v));
  // Both caches of a layer in one dtype.
  EXPECT_THROW(be_->attention(q8, k8, vd, a, out8), Error);
  EXPECT_THROW(be_->rope_write_kv(q8, inv, a, k32, v8), Error);
}

TEST_F(CpuOps, AttentionRejectsBadLayouts) {
  const AttentionShape a{4, 2, 8, 0.35f};
  const std::vector<SeqSpec> seqs = {{0, 3}, {5, 1}};
  Paging paging = make_paging(seqs, 4, rng_);
  BatchLayout b = make_batch(seqs, paging);
  be_->set_batch(b);
  const std::vector<int64_t> cache_shape = {paging.num_blocks, 4, 2, 8};
  Tensor kc = poisoned(cache_shape), vc = poisoned(cache_shape);
  Tensor qkv = tensor({4, 64}, random(256)), out = poisoned({4, 32});
  const AttentionShape bad_gqa{4, 3, 8, 0.35f};
  EXPECT_THROW(be_->attention(qkv, kc, vc, bad_gqa, out), Error);
  Tensor out_bad = poisoned({4, 31});
  EXPECT_THROW(be_->attention(qkv, kc, vc, a, out_bad), Error);
  // A block table entry past the end of the cache.
  b.block_tables[paging.max_blocks] = paging.num_blocks;
  be_->set_batch(b);
  EXPECT_THROW(be_->attention(qkv, kc, vc, a, out), Error);
}

TEST_F(CpuOps, SetBatchRejectsInconsistentLayouts) {
  const std::vector<SeqSpec> seqs = {{0, 3}, {5, 1}};
  Paging paging = make_paging(seqs, 4, rng_);
  const BatchLayout good = make_batch(seqs, paging);
  EXPECT_NO_THROW(be_->set_batch(good));
  BatchLayout b = good;
  b.positions.pop_back();
  EXPECT_THROW(be_->set_batch(b), Error);
  b = good;
  b.query_start = {0, 4, 3};  // decreasing, and does not end at n_tokens
  EXPECT_THROW(be_->set_batch(b), Error);
  b = good;
  b.positions[3] = 6;  // beyond context_len 6 of its sequence
  EXPECT_THROW(be_->set_batch(b), Error);
  b = good;
  b.context_len[0] = paging.max_blocks * 4 + 1;  // more than its block table row holds
  EXPECT_THROW(be_->set_batch(b), Error);
  b = good;
  b.logit_rows = {4};
  EXPECT_THROW(be_->set_batch(b), Error);
  b = good;
  b.block_tables.pop_back();
  EXPECT_THROW(be_->set_batch(b), Error);
}

// rope_write_kv then attention over two steps, as the model runs them: a prefill
// of two sequences, then one decode token each. Against RoPE + attention computed
// on the whole unpaged sequences.
TEST_F(CpuOps, RopeThenAttentionOverPrefillAndDecode) {
  const int qh = 4, kvh = 2, hd = 16, bs = 4;
  const AttentionShape a{qh, kvh, hd, 0.25f};
  const std::vector<int> lengths = {6, 9};  // final lengths; the last token is decoded
  const auto inv = llama3_inv_freq(hd);
  Tensor inv_t = tensor({hd / 2}, inv);
  const std::vector<SeqSpec> full = {{0, lengths[0]}, {0, lengths[1]}};
  Paging paging = make_paging(full, bs, rng_);
  const std::vector<int64_t> cache_shape = {paging.num_blocks, bs, kvh, hd};
  Tensor kc = poisoned(cache_shape), vc = poisoned(cache_shape);
  const int64_t row = (qh + 2 * kvh) * hd;

  // Every token's unrotated qkv row, per sequence and position.
  std::vector<std::vector<std::vector<float>>> rows(2);
  for (int s = 0; s < 2; ++s)
    for (int j = 0; j < lengths[s]; ++j) rows[s].push_back(random(row));

  // Reference: rotate every q and k head, then causal attention per position.
  std::vector<std::vector<std::vector<double>>> ref_out(2);
  for (int s = 0; s < 2; ++s) {
    std::vector<std::vector<std::vector<double>>> q(lengths[s]), k(lengths[s]), v(lengths[s]);
    for (int j = 0; j < lengths[s]; ++j)
      for (int h = 0; h < qh + 2 * kvh; ++h) {
        std::vector<double> head(rows[s][j].begin() + h * hd, rows[s][j].begin() + (h + 1) * hd);
        if (h < qh + kvh) ref_rope_head(head, j, inv);
        (h < qh ? q[j] : h < qh + kvh ? k[j] : v[j]).push_back(head);
      }
    for (int j = 0; j < lengths[s]; ++j) {
      std::vector<double> o;
      for (int h = 0; h < qh; ++h) {
        std::vector<std::vector<double>> keys, values;
        for (int i = 0; i < lengths[s]; ++i) {
          keys.push_back(k[i][h / (qh / kvh)]);
          values.push_back(v[i][h / (qh / kvh)]);
        }
        const auto oh = ref_attend(q[j][h], keys, values, j, a.scale);
        o.insert(o.end(), oh.begin(), oh.end());
      }
      ref_out[s].push_back(o);
    }
  }

  // Step 1 prefills all but the last token of each sequence; step 2 decodes it.
  const std::vector<std::vector<SeqSpec>> steps = {{{0, lengths[0] - 1}, {0, lengths[1] - 1}},
                                                   {{lengths[0] - 1, 1}, {lengths[1] - 1, 1}}};
  for (size_t step = 0; step < steps.size(); ++step) {
    BatchLayout b = make_batch(steps[step], paging);
    be_->set_batch(b);
    const int64_t n = b.num_tokens();
    std::vector<float> xh;
    std::vector<double> want;
    for (int s = 0; s < 2; ++s)
      for (int j = steps[step][s].start; j < steps[step][s].context(); ++j) {
        xh.insert(xh.end(), rows[s][j].begin(), rows[s][j].end());
        want.insert(want.end(), ref_out[s][j].begin(), ref_out[s][j].end());
      }
    Tensor qkv = tensor({n, row}, xh), out = poisoned({n, qh * hd});
    be_->rope_write_kv(qkv, inv_t, a, kc, vc);
    be_->attention(qkv, kc, vc, a, out);
    expect_close(get(out), want, 1e-5, "step " + std::to_string(step));
  }
}

}  // namespace
}  // namespace tpinfer
