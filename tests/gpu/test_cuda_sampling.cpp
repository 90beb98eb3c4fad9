// The cuda backend's sample_rows (backend/cuda/sampling.cu) against the host:
// thousands of random rows at vocabularies of 1000, 32000 and 128256, every
// kind of row under every combination of temperature, top-k and top-p.
//  - The kernel sums weights exactly, so it must equal the exact-arithmetic
//    sampler (tests/exact_sampler.hpp) token for token, always.
//  - sample_token (the cpu backend's sampler) sums doubles: it may choose
//    another token only where the exact sampler shows the draw or the top-p
//    threshold within the documented bound of a boundary.
//  - Logprobs within 1e-5 of sample_token's; two runs give the same bits; the
//    vocab-parallel [parts, n, cols] layout and bf16 logits give the same tokens.
// Outputs are poisoned with NaN first, so a row the kernel skipped fails.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../exact_sampler.hpp"
#include "../sampling_rows.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "base/sampler.hpp"
#include "gpu_test_util.hpp"
#include "model/model.hpp"
#include "model_compare.hpp"

namespace tpinfer::gputest {
namespace {

using testing_exact::exact_sample;
using testing_exact::random_rows;
using testing_exact::Row;
using testing_exact::sampling_bound;

std::unique_ptr<Backend> gpu_backend() {
  CudaBackendOptions o;
  o.memory_fraction = 0.1;
  return make_cuda_backend(MPI_COMM_SELF, o);
}

// Uploads the rows as [parts, n, cols] (parts 1: [n, vocab]) in `dtype`; the
// padding columns of the last part hold 1e30, which must not count.
Tensor upload_rows(Backend& b, const std::vector<Row>& rows, int64_t vocab, int64_t parts,
                   DType dtype) {
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t cols = parts == 1 ? vocab : (vocab + parts - 1) / parts;
  std::vector<float> host(static_cast<size_t>(parts * n * cols), 1e30f);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < vocab; ++j)
      host[((j / cols) * n + r) * cols + j % cols] = rows[r].logits[j];
  return put(b, parts == 1 ? std::vector<int64_t>{n, cols} : std::vector<int64_t>{parts, n, cols},
             host, dtype);
}

// Samples every row (in reverse order, so the output index is not the row's).
std::vector<float> sample_all(Backend& b, const Tensor& logits, int64_t vocab,
                              const std::vector<Row>& rows) {
  std::vector<int32_t> which;
  std::vector<RowSampling> params;
  for (int64_t r = static_cast<int64_t>(rows.size()) - 1; r >= 0; --r) {
    which.push_back(static_cast<int32_t>(r));
    params.push_back(rows[r].q);
  }
  Tensor out = poisoned(b, {static_cast<int64_t>(rows.size()), 2}, DType::f32);
  b.sample_rows(logits, vocab, which, params, out);
  const std::vector<float> got = get(b, out);
  std::vector<float> by_row(got.size());
  for (size_t i = 0; i < which.size(); ++i) {
    by_row[2 * which[i]] = got[2 * i];
    by_row[2 * which[i] + 1] = got[2 * i + 1];
  }
  return by_row;
}

// Checks the drawn (token, logprob) of each row against the host. Returns the
// number of rows where sample_token chose otherwise (within the bound).
int check_against_host(const std::vector<Row>& rows, const std::vector<float>& got, int64_t vocab,
                       const std::string& what) {
  int near_boundary = 0, bad = 0;
  for (size_t r = 0; r < rows.size() && bad < 10; ++r) {
    const Row& row = rows[r];
    const float token = got[2 * r], logprob = got[2 * r + 1];
    const testing_exact::ExactDraw exact = exact_sample(row.logits, row.q);
    const std::string at =
        what + " row " + std::to_string(r) + " (T " + std::to_string(row.q.temperature) +
        ", top_k " + std::to_string(row.q.top_k) + ", top_p " + std::to_string(row.q.top_p) + ")";
    if (token != static_cast<float>(exact.token)) {
      ADD_FAILURE() << at << ": token " << token << ", exact sampler " << exact.token;
      ++bad;
      continue;
    }
    if (exact.token < 0) continue;
    const SampledToken host = sample_token(row.logits, sampling_params(row.q), row.q.position);
    if (host.token != exact.token) {
      ++near_boundary;
      EXPECT_LE(exact.margin, sampling_bound(vocab))
          << at << ": sample_token drew " << host.token << ", the GPU " << exact.token;
    }
    if (row.q.logprobs) {
      if (!(std::fabs(logprob - host.logprob) <= 1e-5f)) {
        ADD_FAILURE() << at << ": logprob " << logprob << ", host " << host.logprob;
        ++bad;
      }
    } else if (logprob != 0.0f) {
      ADD_FAILURE() << at << ": logprob " << logprob << " not asked for";
      ++bad;
    }
  }
  return near_boundary;
}

class CudaSampling : public ::testing::TestWithParam<int64_t> {};

TEST_P(CudaSampling, DrawsWhatTheHostSamplerDrawsDeterministically) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = GetParam();
  const int count = vocab <= 1000 ? 4200 : vocab <= 32000 ? 1260 : 630;
  const std::vector<Row> rows = random_rows(vocab, count, 1000 + vocab);
  auto gpu = gpu_backend();
  const Tensor logits = upload_rows(*gpu, rows, vocab, 1, DType::f32);
  const std::vector<float> got = sample_all(*gpu, logits, vocab, rows);
  const int near = check_against_host(rows, got, vocab, "vocab " + std::to_string(vocab));
  std::printf("vocab %lld: %d rows, %d where sample_token chose otherwise within the bound\n",
              static_cast<long long>(vocab), count, near);
  // Run to run: the same bits.
  const std::vector<float> again = sample_all(*gpu, logits, vocab, rows);
  EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)), 0);
  // A draw really depends on the seed: not everything is the argmax.
  int not_argmax = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    not_argmax += got[2 * r] != static_cast<float>(sample_token(rows[r].logits, {}, 0).token);
  EXPECT_GT(not_argmax, count / 4);
}

INSTANTIATE_TEST_SUITE_P(Vocab, CudaSampling, ::testing::Values(1000, 32000, 128256),
                         [](const auto& info) { return "V" + std::to_string(info.param); });

TEST(CudaSamplingLayout, SplitPartsAndBf16LogitsDrawTheSameWay) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = 32003;  // parts of unequal width
  std::vector<Row> rows = random_rows(vocab, 420, 42);
  auto gpu = gpu_backend();
  const std::vector<float> whole =
      sample_all(*gpu, upload_rows(*gpu, rows, vocab, 1, DType::f32), vocab, rows);
  for (int64_t parts : {2, 4, 8}) {
    const std::vector<float> split =
        sample_all(*gpu, upload_rows(*gpu, rows, vocab, parts, DType::f32), vocab, rows);
    EXPECT_EQ(std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)), 0)
        << parts << " parts";
  }
  // bf16, as the model's logits are: the host checks the rounded values.
  for (Row& row : rows)
    for (float& x : row.logits) x = round_bf16(x);
  const std::vector<float> bf =
      sample_all(*gpu, upload_rows(*gpu, rows, vocab, 4, DType::bf16), vocab, rows);
  check_against_host(rows, bf, vocab, "bf16");
}

TEST(CudaSamplingLayout, RowsWithoutAFiniteMaximumGiveMinusOne) {
  SKIP_WITHOUT_GPU();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<Row> rows = random_rows(500, 4, 3);
  rows[0].logits.assign(500, kNaN);
  rows[1].logits.assign(500, -inf);
  rows[2].logits[17] = inf;
  for (Row& row : rows) row.q.temperature = 1.0f;
  auto gpu = gpu_backend();
  const std::vector<float> got =
      sample_all(*gpu, upload_rows(*gpu, rows, 500, 1, DType::f32), 500, rows);
  EXPECT_EQ(got[0], -1.0f);
  EXPECT_EQ(got[2], -1.0f);
  EXPECT_EQ(got[4], -1.0f);
  EXPECT_GE(got[6], 0.0f);
}

// logprob_rows on the device against row_logprobs on the host: the same top
// tokens in the same order (ties to the lower id), logprobs within 1e-5, over
// split parts and bf16 logits, with targets and rows without a finite maximum.
TEST(CudaLogprobRows, EqualTheHostsTopTokensAndTargetLogprobs) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = 32003;
  std::vector<Row> rows = random_rows(vocab, 300, 7);
  rows[5].logits.assign(static_cast<size_t>(vocab), kNaN);
  for (Row& row : rows)  // bf16-representable, so both dtypes hold the same values
    for (float& x : row.logits) x = round_bf16(x);
  auto gpu = gpu_backend();
  const int k = kMaxTopLogprobs;
  std::vector<int32_t> idx, targets;
  for (size_t i = 0; i < rows.size(); ++i) {
    idx.push_back(static_cast<int32_t>(rows.size() - 1 - i));
    targets.push_back(i % 3 == 0 ? -1 : static_cast<int32_t>((i * 7919) % vocab));
  }
  for (int64_t parts : {1, 4}) {
    for (DType dt : {DType::f32, DType::bf16}) {
      const Tensor logits = upload_rows(*gpu, rows, vocab, parts, dt);
      Tensor out = poisoned(*gpu, {static_cast<int64_t>(idx.size()), 1 + k, 2}, DType::f32);
      gpu->logprob_rows(logits, vocab, idx, targets, k, out);
      const std::vector<float> got = get(*gpu, out);
      for (size_t i = 0; i < idx.size(); ++i) {
        const float* g = got.data() + i * 2 * (1 + k);
        const Row& row = rows[static_cast<size_t>(idx[i])];
        const RowLogprobs want = row_logprobs(row.logits, targets[i], k);
        const std::string what =
            std::to_string(parts) + " parts, " + dtype_name(dt) + ", row " + std::to_string(idx[i]);
        if (want.top.empty()) {  // no finite maximum
          EXPECT_EQ(g[0], -1.0f) << what;
          EXPECT_EQ(g[2], -1.0f) << what;
          continue;
        }
        EXPECT_EQ(g[0], targets[i] >= 0 ? static_cast<float>(targets[i]) : -1.0f) << what;
        if (targets[i] >= 0 && std::isfinite(want.target)) {
          EXPECT_NEAR(g[1], want.target, 1e-5) << what;
        }
        if (targets[i] >= 0 && !std::isfinite(want.target)) {
          EXPECT_EQ(g[1], want.target) << what;
        }
        for (int t = 0; t < k; ++t) {
          ASSERT_EQ(g[2 + 2 * t], static_cast<float>(want.top[t].token)) << what << " top " << t;
          if (std::isfinite(want.top[t].logprob))
            EXPECT_NEAR(g[3 + 2 * t], want.top[t].logprob, 1e-5) << what << " top " << t;
          else
            EXPECT_EQ(g[3 + 2 * t], want.top[t].logprob) << what << " top " << t;
        }
      }
    }
  }
}

// Through the model: forward draws on the device (batch.sampling) what
// sample_token draws from the whole rows the same forward returns without it.
TEST(CudaSamplingForward, DrawsFromTheModelsRowsOnTheDevice) {
  SKIP_WITHOUT_GPU();
  const ModelConfig c = test_config("llama3_gqa_d64");
  const std::vector<SeqSpec> seqs = {{0, 5}, {0, 17}, {0, 1}, {0, 40}, {0, 9}, {0, 3}};
  std::mt19937_64 rng(8);
  const Paging paging = make_paging(seqs, 16, rng);
  BatchLayout b = make_batch(seqs, paging);
  for (size_t i = 0; i < seqs.size(); ++i) {
    RowSampling q;
    q.temperature = i == 0 ? 0.0f : 0.3f * static_cast<float>(i);
    q.top_k = i == 2 ? 50 : 0;
    q.top_p = i == 3 ? 0.7f : 1.0f;
    q.seed = 77 + i;
    q.position = seqs[i].context();
    q.logprobs = i != 4;
    b.sampling.push_back(q);
  }
  b.full_logits.assign(seqs.size(), 1);
  b.full_logits[5] = 0;  // greedy, no logprobs: the argmax only

  auto gpu = gpu_backend();
  Model m = load_test_model(*gpu, c, MPI_COMM_SELF, paging.num_blocks, 16);
  BatchLayout whole = b;
  whole.full_logits.clear();
  whole.sampling.clear();
  std::vector<float> rows;
  forward(m, *gpu, whole, rows);  // writes the same KV as the step below
  StepTokens out;
  step_tokens(m, *gpu, b, out);
  ASSERT_EQ(out.drawn.size(), 6u);
  const int64_t v = c.vocab_size;
  for (size_t i = 0; i < 5; ++i) {
    const std::span<const float> row(rows.data() + i * v, static_cast<size_t>(v));
    const RowSampling& q = b.sampling[i];
    EXPECT_EQ(out.drawn[i].token, exact_sample(row, q).token) << "row " << i;
    const SampledToken host = sample_token(row, sampling_params(q), q.position);
    if (q.logprobs) {
      EXPECT_NEAR(out.drawn[i].logprob, host.logprob, 1e-5) << "row " << i;
    } else {
      EXPECT_EQ(out.drawn[i].logprob, 0.0f) << "row " << i;
    }
  }
  EXPECT_EQ(out.drawn[5].token,
            exact_sample(std::span<const float>(rows.data() + 5 * v, v), {}).token);
}

}  // namespace
}  // namespace tpinfer::gputest
