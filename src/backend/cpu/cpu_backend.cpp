// The fp32 reference backend. Each op is written to be read side by side with
// its comment in backend.hpp: the cuda backend is checked against this one, so
// clarity wins over speed wherever the two disagree. GEMMs go to
// invariant_gemm (a row's sums never depend on the rest of the batch); the
// rest are plain loops parallelised with OpenMP over rows (or token x head).
//
// All shape and batch checks run before any parallel region: an exception must
// never leave an OpenMP region.
#include "backend/cpu/cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/invariant_gemm.hpp"
#include "backend/op_checks.hpp"
#include "base/error.hpp"
#include "base/fp8.hpp"
#include "base/half.hpp"
#include "base/sampler.hpp"

namespace tpinfer {
namespace {

constexpr size_t kAlignment = 64;

#define CPU_CHECK(cond, op, msg) TPINFER_OP_CHECK("cpu", cond, op, msg)

float* f32(const Tensor& t, const char* op, const char* name) {
  check_dtype_and_storage("cpu", t, DType::f32, op, name);
  return static_cast<float*>(t.data);
}

uint8_t* fp8(const Tensor& t, const char* op, const char* name) {
  check_dtype_and_storage("cpu", t, DType::fp8_e4m3, op, name);
  return static_cast<uint8_t*>(t.data);
}

// The two caches of a layer: float32, or both float8_e4m3fn.
void check_cache_dtypes(const Tensor& k_cache, const Tensor& v_cache, const char* op) {
  CPU_CHECK(k_cache.dtype == v_cache.dtype &&
                (k_cache.dtype == DType::f32 || k_cache.dtype == DType::fp8_e4m3),
            op,
            std::string("k_cache is ") + dtype_name(k_cache.dtype) + " and v_cache " +
                dtype_name(v_cache.dtype) + ": both float32 or both float8_e4m3fn");
  CPU_CHECK((k_cache.data != nullptr && v_cache.data != nullptr) || k_cache.numel() == 0, op,
            "the cache has no storage");
}

void check_matrix(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* name) {
  tpinfer::check_matrix("cpu", t, rows, cols, op, name);
}

void check_attention_shape(const AttentionShape& a, const char* op) {
  tpinfer::check_attention_shape("cpu", a, op);
}

// x / sqrt(mean(x^2) + eps) * w, as Hugging Face's LlamaRMSNorm: the sum of
// squares in double so that wide rows of large values lose nothing.
void rmsnorm_row(const float* x, const float* w, float eps, int64_t h, float* out) {
  double ss = 0.0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < h; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(h) + eps));
  for (int64_t i = 0; i < h; ++i) out[i] = (x[i] * inv) * w[i];
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Below this many elements an OpenMP fork costs more than the loop.
constexpr int64_t kParallelMin = 1 << 14;
// linear splits out's columns over threads only when each slice stays a real GEMM.
constexpr int64_t kMinSliceCols = 32;
constexpr int64_t kMinSliceFlops = 1 << 18;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::unique_ptr<HostCollectives> tp, int threads) : tp_(std::move(tp)) {
    if (threads > 0) omp_set_num_threads(threads);
    // Every parallel region names its thread count: omp_set_num_threads only
    // sets it for the calling thread, and the ops may run on another one.
    threads_ = threads > 0 ? threads : omp_get_max_threads();
    tp_size_ = tp_->size();
  }

  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::f32; }
  DeviceKind device_kind() const override { return DeviceKind::cpu; }
  MemoryInfo memory_info() const override { return {bytes_used_, std::nullopt}; }

  Tensor alloc(const std::vector<int64_t>& shape, DType dtype) override {
    if (dtype != DType::f32 && dtype != DType::fp8_e4m3)
      throw UsageError(std::string("cpu backend: alloc: dtype ") + dtype_name(dtype) +
                       " is not supported (the cpu backend computes in float32; it also stores "
                       "a KV cache in float8_e4m3fn)");
    const int64_t n = checked_numel("cpu", shape);
    // aligned_alloc wants a multiple of the alignment; a zero-sized tensor still
    // gets a distinct non-null pointer.
    const size_t bytes =
        (static_cast<size_t>(std::max<int64_t>(n, 1)) * static_cast<size_t>(dtype_bytes(dtype)) +
         kAlignment - 1) /
        kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    blocks_.emplace_back(p);
    bytes_used_ += static_cast<int64_t>(bytes);
    return Tensor{p, dtype, shape};
  }

  void upload(const Tensor& dst, const float* src) override {
    CPU_CHECK(src != nullptr || dst.numel() == 0, "upload", "null source");
    if (dst.dtype == DType::fp8_e4m3) {
      uint8_t* d = fp8(dst, "upload", "dst");
      for (int64_t i = 0; i < dst.numel(); ++i) d[i] = float_to_fp8_e4m3(src[i]);
      return;
    }
    float* d = f32(dst, "upload", "dst");
    if (dst.numel() > 0) std::memcpy(d, src, static_cast<size_t>(dst.numel()) * sizeof(float));
  }

  void upload_bits(const Tensor& dst, const uint16_t* src, DType src_dtype) override {
    CPU_CHECK(src != nullptr || dst.numel() == 0, "upload_bits", "null source");
    CPU_CHECK(
        src_dtype == DType::bf16 || src_dtype == DType::f16, "upload_bits",
        std::string("source dtype ") + dtype_name(src_dtype) + " (rule: bfloat16 or float16 bits)");
    const auto n = static_cast<size_t>(dst.numel());
    if (dst.dtype == DType::f32)  // widened in place
      return widen_to_float(src_dtype, src, f32(dst, "upload_bits", "dst"), n);
    std::vector<float> wide(n);
    widen_to_float(src_dtype, src, wide.data(), n);
    upload(dst, wide.data());
  }

  void download(const Tensor& src, float* dst) override {
    CPU_CHECK(dst != nullptr || src.numel() == 0, "download", "null destination");
    if (src.dtype == DType::fp8_e4m3) {
      const uint8_t* s = fp8(src, "download", "src");
      const auto& table = fp8_e4m3_table();
      for (int64_t i = 0; i < src.numel(); ++i) dst[i] = table[s[i]];
      return;
    }
    const float* s = f32(src, "download", "src");
    if (src.numel() > 0) std::memcpy(dst, s, static_cast<size_t>(src.numel()) * sizeof(float));
  }

  void set_batch(const BatchLayout& b) override {
    validate_batch("cpu", b);
    batch_ = b;
    // Which sequence each token belongs to: attention needs it per (token, head).
    token_seq_.assign(b.token_ids.size(), 0);
    for (int32_t s = 0; s < b.num_seqs(); ++s)
      for (int32_t t = b.query_start[s]; t < b.query_start[s + 1]; ++t) token_seq_[t] = s;
  }

  void embed(const Tensor& table, int64_t vocab_offset, Tensor& out) override {
    const char* op = "embed";
    const float* tab = f32(table, op, "table");
    float* o = f32(out, op, "out");
    const int64_t n = batch_.num_tokens();
    const auto [rows, h] = check_embed_shapes("cpu", table, n, out);
    const int32_t* ids = batch_.token_ids.data();
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * h >= kParallelMin)
    for (int64_t t = 0; t < n; ++t) {
      const int64_t r = static_cast<int64_t>(ids[t]) - vocab_offset;
      if (r >= 0 && r < rows)
        std::memcpy(o + t * h, tab + r * h, static_cast<size_t>(h) * sizeof(float));
      else
        std::fill_n(o + t * h, h, 0.0f);  // another rank's shard: the all-reduce adds it
    }
  }

  // out may alias x (each row is read in full before it is written).
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    const char* op = "rmsnorm";
    const float* xp = f32(x, op, "x");
    const float* wp = f32(w, op, "w");
    float* o = f32(out, op, "out");
    const auto [n, h] = check_rmsnorm_shapes("cpu", x, w, out);
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * h >= kParallelMin)
    for (int64_t t = 0; t < n; ++t) rmsnorm_row(xp + t * h, wp, eps, h, o + t * h);
  }

  // out may alias x (x's row is consumed into residual before out's row is written).
  void add_rmsnorm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                   Tensor& out) override {
    const char* op = "add_rmsnorm";
    float* r = f32(residual, op, "residual");
    const float* xp = f32(x, op, "x");
    const float* wp = f32(w, op, "w");
    float* o = f32(out, op, "out");
    const auto [n, h] = check_add_rmsnorm_shapes("cpu", residual, x, w, out);
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * h >= kParallelMin)
    for (int64_t t = 0; t < n; ++t) {
      float* rr = r + t * h;
      const float* xr = xp + t * h;
#pragma omp simd
      for (int64_t i = 0; i < h; ++i) rr[i] += xr[i];
      rmsnorm_row(rr, wp, eps, h, o + t * h);
    }
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    const char* op = "linear";
    const float* xp = f32(x, op, "x");
    const float* wp = f32(w, op, "w");
    float* o = f32(out, op, "out");
    const float* bp = bias != nullptr ? f32(*bias, op, "bias") : nullptr;
    const auto [n, k, m] = check_linear_shapes("cpu", x, w, bias, out);
    if (n == 0 || m == 0) return;
    // Each OpenMP thread takes a slice of w's rows (out's columns); how the
    // columns are split changes no element's sum (invariant_gemm.hpp).
    const double flops = static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(k);
    const int64_t by_size = std::min<int64_t>(
        m / kMinSliceCols, static_cast<int64_t>(std::min(flops / kMinSliceFlops, 1e6)));
    const int slices = static_cast<int>(std::clamp<int64_t>(by_size, 1, threads_));
#pragma omp parallel num_threads(slices)
    {
      const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
      // Slice bounds on 16-column (one cache line of out) boundaries.
      auto bound = [&](int64_t i) { return std::min(m, (m * i / parts + 15) / 16 * 16); };
      const int64_t j0 = bound(part), j1 = bound(part + 1);
      if (j1 > j0) invariant_gemm(xp, wp, bp, o, n, k, m, j0, j1);
    }
  }

  void rope_write_kv(Tensor& qkv, const Tensor& inv_freq, const AttentionShape& a, Tensor& k_cache,
                     Tensor& v_cache) override {
    const char* op = "rope_write_kv";
    check_attention_shape(a, op);
    CPU_CHECK(a.head_dim % 2 == 0, op,
              "head_dim " + std::to_string(a.head_dim) + " is odd (rotate-half needs pairs)");
    float* x = f32(qkv, op, "qkv");
    const float* inv = f32(inv_freq, op, "inv_freq");
    check_cache_dtypes(k_cache, v_cache, op);
    const bool fp8_cache = k_cache.dtype == DType::fp8_e4m3;
    const int64_t n = batch_.num_tokens(), hd = a.head_dim, half = hd / 2;
    const int64_t row = check_qkv_shape("cpu", qkv, n, a, op);
    check_inv_freq_shape("cpu", inv_freq, a);
    const int64_t blocks = check_kv_cache_shapes("cpu", k_cache, v_cache, batch_.block_size, a, op);
    const int64_t slots = blocks * batch_.block_size;
    for (int64_t t = 0; t < n; ++t)
      CPU_CHECK(batch_.slot_mapping[t] >= 0 && batch_.slot_mapping[t] < slots, op,
                "token " + std::to_string(t) + " has slot " +
                    std::to_string(batch_.slot_mapping[t]) + " outside the cache's " +
                    std::to_string(slots) + " slots");

    const int64_t rotated_heads = a.q_heads + a.kv_heads;  // q heads then k heads, adjacent
    const int64_t kv_width = a.kv_heads * hd;
    const int32_t* pos = batch_.positions.data();
    const int32_t* slot = batch_.slot_mapping.data();
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * row >= kParallelMin)
    for (int64_t t = 0; t < n; ++t) {
      float* xr = x + t * row;
      // The angle is rounded to fp32 before cos/sin, as Hugging Face computes
      // position * inv_freq in fp32; a backend that kept more precision would
      // drift from the reference at large positions.
      const float p = static_cast<float>(pos[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = p * inv[i];
        const float c = std::cos(angle), s = std::sin(angle);
        for (int64_t h = 0; h < rotated_heads; ++h) {
          float* head = xr + h * hd;
          const float x1 = head[i], x2 = head[i + half];
          head[i] = x1 * c - x2 * s;
          head[i + half] = x2 * c + x1 * s;
        }
      }
      const float* k = xr + a.q_heads * hd;
      const float* v = k + kv_width;
      const int64_t at = slot[t] * kv_width;
      if (fp8_cache) {
        uint8_t* kc = static_cast<uint8_t*>(k_cache.data) + at;
        uint8_t* vc = static_cast<uint8_t*>(v_cache.data) + at;
        for (int64_t i = 0; i < kv_width; ++i) {
          kc[i] = float_to_fp8_e4m3(k[i]);
          vc[i] = float_to_fp8_e4m3(v[i]);
        }
      } else {
        std::memcpy(static_cast<float*>(k_cache.data) + at, k,
                    static_cast<size_t>(kv_width) * sizeof(float));
        std::memcpy(static_cast<float*>(v_cache.data) + at, v,
                    static_cast<size_t>(kv_width) * sizeof(float));
      }
    }
  }

  void attention(const Tensor& qkv, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionShape& a, Tensor& out) override {
    const char* op = "attention";
    check_attention_shape(a, op);
    const float* x = f32(qkv, op, "qkv");
    check_cache_dtypes(k_cache, v_cache, op);
    float* o = f32(out, op, "out");
    const int64_t n = batch_.num_tokens(), hd = a.head_dim;
    const int64_t row = check_qkv_shape("cpu", qkv, n, a, op);
    check_matrix(out, n, a.q_heads * hd, op, "out");
    const int64_t blocks = check_kv_cache_shapes("cpu", k_cache, v_cache, batch_.block_size, a, op);

    const int bs = batch_.block_size;
    const int64_t stride = batch_.max_blocks_per_seq;
    // Every block a sequence's context touches must be in the cache; set_batch
    // has checked positions < context_len <= stride * block_size.
    int64_t max_ctx = 0;
    for (int32_t s = 0; s < batch_.num_seqs(); ++s) {
      const int64_t ctx = batch_.context_len[s];
      max_ctx = std::max(max_ctx, ctx);
      for (int64_t b = 0; b < (ctx + bs - 1) / bs; ++b) {
        const int32_t blk = batch_.block_tables[s * stride + b];
        CPU_CHECK(blk >= 0 && blk < blocks, op,
                  "sequence " + std::to_string(s) + " block " + std::to_string(b) + " is " +
                      std::to_string(blk) + ", outside the cache's " + std::to_string(blocks) +
                      " blocks");
      }
    }

    const int64_t q_heads = a.q_heads, kv_heads = a.kv_heads, group = q_heads / kv_heads;
    const float scale = a.scale;
    scores_.resize(static_cast<size_t>(threads_) * static_cast<size_t>(max_ctx));
    float* scores_all = scores_.data();
    // An fp8 cache row is decoded into the thread's own row buffer before use.
    const bool fp8_cache = k_cache.dtype == DType::fp8_e4m3;
    rows_.resize(static_cast<size_t>(threads_) * static_cast<size_t>(hd));
    float* rows_all = rows_.data();
    const float* fp8_values = fp8_e4m3_table().data();
    const int32_t* pos = batch_.positions.data();
    const int32_t* seq_of = token_seq_.data();
    const int32_t* tables = batch_.block_tables.data();

    // Work per (token, head) grows with the position: dynamic scheduling keeps a
    // long prefill sequence from landing on one thread.
    const bool parallel = n * q_heads > 1;
#pragma omp parallel for num_threads(threads_) collapse(2) schedule(dynamic, 4) if (parallel)
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < q_heads; ++h) {
        float* sc = scores_all + static_cast<size_t>(omp_get_thread_num()) * max_ctx;
        const int32_t* table = tables + seq_of[t] * stride;
        const int64_t p = pos[t];
        const int64_t kvh = h / group;
        const float* q = x + t * row + h * hd;
        // The cache row of key position j of this token's sequence, for kv head kvh.
        auto slot_row = [&](int64_t j) {
          return (((static_cast<int64_t>(table[j / bs]) * bs + j % bs) * kv_heads) + kvh) * hd;
        };
        float* decoded = rows_all + static_cast<size_t>(omp_get_thread_num()) * hd;
        auto cache_row = [&](const Tensor& cache, int64_t j) -> const float* {
          if (!fp8_cache) return static_cast<const float*>(cache.data) + slot_row(j);
          const uint8_t* r = static_cast<const uint8_t*>(cache.data) + slot_row(j);
          for (int64_t d = 0; d < hd; ++d) decoded[d] = fp8_values[r[d]];
          return decoded;
        };

        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j <= p; ++j) {
          sc[j] = dot(q, cache_row(k_cache, j), hd) * scale;
          mx = std::max(mx, sc[j]);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j <= p; ++j) {
          sc[j] = std::exp(sc[j] - mx);
          sum += sc[j];
        }
        float* oh = o + t * q_heads * hd + h * hd;
        std::fill_n(oh, hd, 0.0f);
        for (int64_t j = 0; j <= p; ++j) {
          const float* v = cache_row(v_cache, j);
          const float wj = sc[j];
#pragma omp simd
          for (int64_t d = 0; d < hd; ++d) oh[d] += wj * v[d];
        }
        const float inv_sum = 1.0f / sum;
        for (int64_t d = 0; d < hd; ++d) oh[d] *= inv_sum;
      }
    }
  }

  void silu_mul(const Tensor& gate_up, Tensor& out) override {
    const char* op = "silu_mul";
    const float* g = f32(gate_up, op, "gate_up");
    float* o = f32(out, op, "out");
    const auto [n, i] = check_silu_mul_shapes("cpu", gate_up, out);
    const int64_t two_i = 2 * i;
#pragma omp parallel for num_threads(threads_) schedule(static) if (n * i >= kParallelMin)
    for (int64_t t = 0; t < n; ++t) {
      const float* gate = g + t * two_i;
      const float* up = gate + i;
      float* orow = o + t * i;
      // gate / (1 + e^-gate) is silu; for gate << 0 e^-gate overflows to inf and
      // the quotient is a correct -0 rather than NaN.
      for (int64_t j = 0; j < i; ++j) orow[j] = gate[j] / (1.0f + std::exp(-gate[j])) * up[j];
    }
  }

  void gather_rows(const Tensor& x, Tensor& out) override {
    const char* op = "gather_rows";
    const float* xp = f32(x, op, "x");
    float* o = f32(out, op, "out");
    const auto& rows = batch_.logit_rows;
    // set_batch has checked every row >= 0.
    const int32_t max_row = rows.empty() ? -1 : *std::max_element(rows.begin(), rows.end());
    const auto [m, c] =
        check_gather_rows_shapes("cpu", x, static_cast<int64_t>(rows.size()), max_row, out);
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(o + j * c, xp + rows[j] * c, static_cast<size_t>(c) * sizeof(float));
  }

  void argmax_rows(const Tensor& logits, int64_t valid_cols, int64_t col_offset,
                   Tensor& out) override {
    const char* op = "argmax_rows";
    const float* l = f32(logits, op, "logits");
    float* o = f32(out, op, "out");
    const auto [n, c] = check_argmax_rows_shapes("cpu", logits, valid_cols, out);
    for (int64_t r = 0; r < n; ++r) {
      const float* row = l + r * c;
      float best = -std::numeric_limits<float>::infinity();
      int64_t at = 0;
      for (int64_t j = 0; j < valid_cols; ++j)
        if (row[j] > best) {  // strict: the lowest column wins ties; NaN never wins
          best = row[j];
          at = j;
        }
      o[2 * r] = best;
      o[2 * r + 1] = static_cast<float>(col_offset + at);
    }
  }

  // The reference: sample_token on each row, rows in parallel (each draw
  // depends only on its own row, seed and position).
  // Logits row `row` of a sample_rows/logprob_rows layout, its first `vocab`
  // columns contiguous (gathered from the parts when split).
  static std::span<const float> logits_row(const float* x, const SampleRowsLayout& l, int64_t vocab,
                                           int32_t row, std::vector<float>& gathered) {
    if (l.parts == 1) return {x + row * l.cols, static_cast<size_t>(vocab)};
    gathered.resize(static_cast<size_t>(vocab));
    for (int64_t p = 0; p * l.cols < vocab; ++p)
      std::copy_n(x + (p * l.n + row) * l.cols, std::min(l.cols, vocab - p * l.cols),
                  gathered.data() + p * l.cols);
    return gathered;
  }

  void logprob_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                    const std::vector<int32_t>& targets, int k, Tensor& out) override {
    const char* op = "logprob_rows";
    const SampleRowsLayout l = check_logprob_rows("cpu", logits, vocab, rows, targets, k, out);
    if (rows.empty()) return;
    const float* x = f32(logits, op, "logits");
    float* o = f32(out, op, "out");
    const int64_t m = static_cast<int64_t>(rows.size()), stride = 2 * (1 + k);
#pragma omp parallel for num_threads(threads_) schedule(dynamic) if (m > 1)
    for (int64_t i = 0; i < m; ++i) {
      std::vector<float> gathered;
      const RowLogprobs r = row_logprobs(logits_row(x, l, vocab, rows[i], gathered), targets[i], k);
      float* oi = o + i * stride;
      const bool none = r.top.empty() && k > 0;  // no finite maximum
      oi[0] = targets[i] >= 0 && !none ? static_cast<float>(targets[i]) : -1.0f;
      oi[1] = targets[i] >= 0 ? r.target : 0.0f;
      for (int j = 0; j < k; ++j) {
        const bool have = static_cast<size_t>(j) < r.top.size();
        oi[2 + 2 * j] = have ? static_cast<float>(r.top[j].token) : -1.0f;
        oi[3 + 2 * j] = have ? r.top[j].logprob : 0.0f;
      }
    }
  }

  void sample_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                   const std::vector<RowSampling>& params, Tensor& out) override {
    const char* op = "sample_rows";
    const SampleRowsLayout l = check_sample_rows("cpu", logits, vocab, rows, params, out);
    if (rows.empty()) return;
    const float* x = f32(logits, op, "logits");
    float* o = f32(out, op, "out");
    const int64_t m = static_cast<int64_t>(rows.size());
    std::vector<std::exception_ptr> errors(static_cast<size_t>(m));
#pragma omp parallel for num_threads(threads_) schedule(dynamic) if (m > 1)
    for (int64_t i = 0; i < m; ++i) {
      try {
        std::vector<float> gathered;
        const std::span<const float> r = logits_row(x, l, vocab, rows[i], gathered);
        // sample_token throws for such a row; here it is token -1, as on the GPU.
        bool finite = false, pos_inf = false;
        for (float v : r) {
          finite = finite || std::isfinite(v);
          pos_inf = pos_inf || v == std::numeric_limits<float>::infinity();
        }
        if (!finite || pos_inf) {
          o[2 * i] = -1.0f;
          o[2 * i + 1] = 0.0f;
          continue;
        }
        const RowSampling& q = params[i];
        const SampledToken t = sample_token(r, sampling_params(q), q.position);
        o[2 * i] = static_cast<float>(t.token);
        o[2 * i + 1] = t.logprob;
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

  void all_reduce_sum(Tensor& x) override {
    tp_->all_reduce_sum(f32(x, "all_reduce_sum", "x"), x.numel());
  }

  void all_gather(const Tensor& local, Tensor& out) override {
    const char* op = "all_gather";
    const float* l = f32(local, op, "local");
    float* o = f32(out, op, "out");
    check_all_gather_shapes("cpu", local, tp_size_, out);
    CPU_CHECK(local.numel() <= INT_MAX, op, "local " + shape_str(local) + " exceeds an MPI count");
    tp_->all_gather(l, local.numel(), o);
  }

 private:
  std::unique_ptr<HostCollectives> tp_;
  int tp_size_ = 1;
  int threads_ = 1;
  int64_t bytes_used_ = 0;
  std::vector<std::unique_ptr<void, FreeDeleter>> blocks_;
  BatchLayout batch_;
  std::vector<int32_t> token_seq_;
  std::vector<float> scores_;  // attention scratch: one row of max context per thread
  std::vector<float> rows_;    // attention scratch: one decoded fp8 cache row per thread
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::unique_ptr<HostCollectives> tp, int threads) {
  return std::make_unique<CpuBackend>(std::move(tp), threads);
}

}  // namespace tpinfer
