// Times the cuda backend's ops at Llama-3-8B shapes (hidden 4096, 32 q heads,
// 8 kv heads, head_dim 128, intermediate 14336, vocab 128256) for one decode
// step at batch 1 and 64, and a 2048-token prefill's attention. Not a test:
// `tpinfer_gpu_bench` prints one line per op with the median time and the
// achieved rate (GB/s of compulsory bytes, TFLOP/s).
//
// The backend's stream is private, so an op is timed from the host: R launches
// back to back, then a download of one element (which waits for the stream),
// median of 7 such runs after a warm-up, divided by R. GPU-bound ops hide the
// launch cost; for ops of a few microseconds the number includes it (that is
// what a step without CUDA graphs pays). Weights rotate over enough copies to
// exceed the 60 MB L2, so every launch streams from HBM. Inputs are random.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_backend.hpp"

namespace tpinfer {
namespace {

struct Bench {
  std::unique_ptr<Backend> be;
  Tensor probe;
  std::mt19937_64 rng{1};

  Tensor random(const std::vector<int64_t>& shape, float range, DType dt = DType::bf16) {
    Tensor t = be->alloc(shape, dt);
    std::vector<float> h(static_cast<size_t>(t.numel()));
    std::uniform_real_distribution<float> d(-range, range);
    for (float& x : h) x = d(rng);
    be->upload(t, h.data());
    return t;
  }

  // Median seconds per call of `op(i)` (i counts launches, for rotating inputs).
  double time(const std::function<void(int)>& op, int reps = 20) {
    float sink = 0;
    for (int i = 0; i < 3; ++i) op(i);
    be->download(probe, &sink);
    std::vector<double> runs;
    for (int r = 0; r < 7; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) op(i);
      be->download(probe, &sink);
      const auto t1 = std::chrono::steady_clock::now();
      runs.push_back(std::chrono::duration<double>(t1 - t0).count() / reps);
    }
    std::sort(runs.begin(), runs.end());
    return runs[runs.size() / 2];
  }
};

void report(const std::string& what, double sec, double bytes, double flops) {
  std::printf("%-44s %9.1f us  %7.0f GB/s  %7.1f TFLOP/s\n", what.c_str(), sec * 1e6,
              bytes / sec / 1e9, flops / sec / 1e12);
  std::fflush(stdout);
}

void bench_linear(Bench& b, const char* name, int64_t k, int64_t m) {
  // Enough weight copies to exceed L2 (60 MB) at least twice over.
  const double wbytes = 2.0 * static_cast<double>(k) * static_cast<double>(m);
  const int copies = std::max(1, static_cast<int>(std::ceil(160e6 / wbytes)));
  std::vector<Tensor> w;
  for (int i = 0; i < copies; ++i) w.push_back(b.random({m, k}, 0.02f));
  // Decode batches, the ridge point (256), and prompt steps: 8,192 rows (the
  // default step budget) against 8,045 (where a mixed step's qkv ran at 0.84
  // of its roofline while 8,192-row steps got 0.45-0.61; docs/PERF.md).
  for (int64_t n : {1, 2, 4, 8, 64, 256, 2048, 8045, 8064, 8192}) {
    Tensor x = b.random({n, k}, 1.0f), out = b.be->alloc({n, m}, DType::bf16);
    const double sec = b.time([&](int i) { b.be->linear(x, w[i % copies], nullptr, out); });
    const double bytes = wbytes + 2.0 * n * (k + m);
    report(std::string("linear ") + name + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
               " m=" + std::to_string(m),
           sec, bytes, 2.0 * n * k * m);
  }
}

// Attention over `seqs` sequences of `ctx` cached tokens each, `nq` queries
// each (nq = 1: decode; nq = ctx: a whole causal prefill).
// tag: a prefix for the line (the backend's kernel choice).
void bench_attention(Bench& b, int seqs, int ctx, int nq, DType cache_dtype = DType::bf16,
                     const std::string& tag = "") {
  const int qh = 32, kvh = 8, hd = 128, bs = 16;
  const AttentionShape a{qh, kvh, hd, 1.0f / std::sqrt(128.0f)};
  const int per_seq = (ctx + bs - 1) / bs;
  const int blocks = seqs * per_seq;
  BatchLayout bl;
  bl.block_size = bs;
  bl.max_blocks_per_seq = per_seq;
  std::vector<int32_t> ids(blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), b.rng);
  bl.block_tables = ids;
  bl.query_start = {0};
  for (int s = 0; s < seqs; ++s) {
    for (int p = ctx - nq; p < ctx; ++p) {
      bl.token_ids.push_back(1);
      bl.positions.push_back(p);
      bl.slot_mapping.push_back(ids[s * per_seq + p / bs] * bs + p % bs);
    }
    bl.query_start.push_back(bl.num_tokens());
    bl.context_len.push_back(ctx);
  }
  b.be->set_batch(bl);
  const std::vector<int64_t> cache = {blocks, bs, kvh, hd};
  Tensor kc = b.random(cache, 1.0f, cache_dtype), vc = b.random(cache, 1.0f, cache_dtype);
  const int64_t n = bl.num_tokens();
  Tensor qkv = b.random({n, (qh + 2 * kvh) * hd}, 1.0f);
  Tensor out = b.be->alloc({n, qh * hd}, DType::bf16);
  const double sec = b.time([&](int) { b.be->attention(qkv, kc, vc, a, out); }, 10);
  // Compulsory bytes: each sequence's K and V once, q in, out.
  const double kv = 2.0 * seqs * static_cast<double>(ctx) * kvh * hd * dtype_bytes(cache_dtype);
  const double io = 2.0 * n * qh * hd * 2;
  const double pairs = nq == 1 ? static_cast<double>(ctx) : 0.5 * ctx * (ctx + 1.0);
  const double flops = 4.0 * seqs * pairs * qh * hd;
  report(tag + (cache_dtype == DType::fp8_e4m3 ? "attention fp8 " : "attention ") +
             std::to_string(seqs) + " seqs x " + std::to_string(ctx) + " ctx, " +
             std::to_string(nq) + " q",
         sec, kv + io, flops);
}

void bench_rows(Bench& b) {
  const int64_t h = 4096, inter = 14336;
  for (int64_t n : {1, 64}) {
    const std::string sn = " n=" + std::to_string(n);
    Tensor x = b.random({n, h}, 1.0f), r = b.random({n, h}, 1.0f), w = b.random({h}, 1.0f);
    Tensor out = b.be->alloc({n, h}, DType::bf16);
    report("rmsnorm h=4096" + sn, b.time([&](int) { b.be->rmsnorm(x, w, 1e-5f, out); }),
           4.0 * n * h, 0);
    report("add_rmsnorm h=4096" + sn, b.time([&](int) { b.be->add_rmsnorm(r, x, w, 1e-5f, out); }),
           8.0 * n * h, 0);
    Tensor gu = b.random({n, 2 * inter}, 2.0f), act = b.be->alloc({n, inter}, DType::bf16);
    report("silu_mul i=14336" + sn, b.time([&](int) { b.be->silu_mul(gu, act); }), 6.0 * n * inter,
           0);
  }
}

void bench_rope(Bench& b, int64_t n) {
  const int qh = 32, kvh = 8, hd = 128, bs = 16;
  BatchLayout bl;
  bl.block_size = bs;
  const int per_seq = 64;
  bl.max_blocks_per_seq = per_seq;
  bl.query_start = {0};
  for (int64_t s = 0; s < n; ++s) {
    bl.token_ids.push_back(1);
    bl.positions.push_back(1000);
    bl.slot_mapping.push_back(static_cast<int32_t>(s * per_seq * bs + 1000));
    bl.query_start.push_back(static_cast<int32_t>(s + 1));
    bl.context_len.push_back(1001);
    for (int i = 0; i < per_seq; ++i)
      bl.block_tables.push_back(static_cast<int32_t>(s * per_seq + i));
  }
  b.be->set_batch(bl);
  const AttentionShape a{qh, kvh, hd, 0.1f};
  Tensor qkv = b.random({n, (qh + 2 * kvh) * hd}, 1.0f), inv = b.random({hd / 2}, 0.5f, DType::f32);
  const std::vector<int64_t> cache = {n * per_seq, bs, kvh, hd};
  Tensor kc = b.be->alloc(cache, DType::bf16), vc = b.be->alloc(cache, DType::bf16);
  report("rope_write_kv n=" + std::to_string(n),
         b.time([&](int) { b.be->rope_write_kv(qkv, inv, a, kc, vc); }),
         2.0 * n * (qh + 2 * kvh) * hd * 2 + 2.0 * n * kvh * hd * 2, 0);
}

}  // namespace
}  // namespace tpinfer

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  using namespace tpinfer;
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device\n");
    MPI_Finalize();
    return 0;
  }
  {
    Bench b;
    CudaBackendOptions o;
    o.memory_fraction = 0.5;
    o.prefill_attention = CudaBackendOptions::PrefillAttention::mma;  // the wgmma lines say so
    // TPINFER_BENCH_GEMV_ROWS=0 times linear on cuBLASLt alone (the A/B of gemv.cu).
    if (const char* g = std::getenv("TPINFER_BENCH_GEMV_ROWS")) o.gemv_max_rows = std::atoi(g);
    std::printf("gemv for linear over <= %d rows\n", o.gemv_max_rows);
    b.be = make_cuda_backend(MPI_COMM_SELF, o);
    b.probe = b.be->alloc({1}, DType::f32);
    // Optional argument: only the group named (linear, attention, rows).
    const std::string only = argc > 1 ? argv[1] : "";
    auto want = [&](const char* group) { return only.empty() || only == group; };
    std::printf("%-44s %12s %12s %15s\n", "op (Llama-3-8B shapes)", "median", "rate", "");
    if (want("linear")) {
      bench_linear(b, "qkv", 4096, 6144);
      bench_linear(b, "o_proj", 4096, 4096);
      bench_linear(b, "gate_up", 4096, 28672);
      bench_linear(b, "down", 14336, 4096);
      bench_linear(b, "lm_head", 4096, 128256);
    }
    if (want("attention")) {
      bench_attention(b, 64, 1024, 1);
      bench_attention(b, 256, 1000, 1);  // the offline 1000/1000 decode steps
      bench_attention(b, 256, 1500, 1);
      bench_attention(b, 256, 2000, 1);
      bench_attention(b, 256, 1500, 1, DType::fp8_e4m3);
      bench_attention(b, 64, 1024, 1, DType::fp8_e4m3);
      bench_attention(b, 1, 2048, 2048, DType::fp8_e4m3);
      bench_attention(b, 1, 1024, 1);
      bench_attention(b, 1, 8192, 1);
      bench_attention(b, 8, 4096, 1);
      bench_attention(b, 1, 2048, 2048);
      bench_attention(b, 4, 2048, 2048);
      // The same prefills on the Hopper wgmma kernel (--cuda-prefill-attention wgmma).
      Bench w;
      CudaBackendOptions ow = o;
      ow.prefill_attention = CudaBackendOptions::PrefillAttention::wgmma;
      w.be = make_cuda_backend(MPI_COMM_SELF, ow);
      w.probe = w.be->alloc({1}, DType::f32);
      bench_attention(w, 1, 2048, 2048, DType::bf16, "wgmma ");
      bench_attention(w, 4, 2048, 2048, DType::bf16, "wgmma ");
    }
    if (want("rows")) {
      bench_rows(b);
      bench_rope(b, 1);
      bench_rope(b, 64);
    }
  }
  MPI_Finalize();
  return 0;
}
