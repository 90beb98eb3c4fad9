#include "backend/cuda/gemm.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "base/error.hpp"

namespace tpinfer::cuda {
namespace {

constexpr int kCandidates = 8;      // of the heuristic's list, timed
constexpr int kDecodeReps = 3;      // timed calls per candidate at decode rows
constexpr float kMustBeat = 0.97f;  // of the heuristic's first pick's time

// The largest power of two (up to 256) dividing the address: cuBLASLt's
// heuristic may only pick kernels whose alignment needs the pointers meet.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

template <class T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  TPINFER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof v));
}

template <class T>
void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const T& v) {
  TPINFER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof v));
}

MatrixLayout layout(uint64_t rows, uint64_t cols, int64_t ld, cudaDataType_t type = CUDA_R_16BF) {
  cublasLtMatrixLayout_t l = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  return MatrixLayout(l);
}

}  // namespace

size_t Gemm::KeyHash::operator()(const Key& k) const {
  size_t h = std::hash<int64_t>()(k.n);
  auto mix = [&h](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  mix(static_cast<uint64_t>(k.k));
  mix(static_cast<uint64_t>(k.m));
  mix(k.bias);
  mix(k.out_f32);
  mix((uint64_t{k.align_x} << 32) | k.align_w);
  mix((uint64_t{k.align_out} << 32) | k.align_bias);
  return h;
}

Gemm::Gemm(bool tune, bool deterministic)
    : tune_(tune && !deterministic), deterministic_(deterministic) {
  cublasLtHandle_t h = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtCreate(&h));
  handle_ = LtHandle(h);
  if (tune_) {
    start_ = make_timing_event();
    stop_ = make_timing_event();
  }
}

int64_t Gemm::bucket_of(int64_t n) {
  if (n <= kDecodeRows) return (n + kRowStep - 1) / kRowStep * kRowStep;
  int64_t b = kDecodeRows;
  while (b < n) b *= 2;
  return b;
}

void Gemm::set_workspace(void* ptr, size_t bytes) {
  workspace_ = ptr;
  workspace_bytes_ = bytes;
  plans_.clear();  // the heuristic's choice depends on the workspace size
  winners_.clear();
}

Gemm::Plan Gemm::describe(const Key& key, const void* bias) const {
  Plan p;
  cublasLtMatmulDesc_t d = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  p.desc = MatmulDesc(d);
  set_desc(d, CUBLASLT_MATMUL_DESC_TRANSA, cublasOperation_t{CUBLAS_OP_T});
  set_desc(d, CUBLASLT_MATMUL_DESC_TRANSB, cublasOperation_t{CUBLAS_OP_N});
  if (key.bias) {
    set_desc(d, CUBLASLT_MATMUL_DESC_EPILOGUE, cublasLtEpilogue_t{CUBLASLT_EPILOGUE_BIAS});
    set_desc(d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t{CUDA_R_16BF});
    set_desc(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  }
  // A = w as stored: column-major k x m (ld k), transposed by the op.
  p.a = layout(static_cast<uint64_t>(key.k), static_cast<uint64_t>(key.m), key.k);
  // B = x as stored: column-major k x n.
  p.b = layout(static_cast<uint64_t>(key.k), static_cast<uint64_t>(key.n), key.k);
  // C = D = out as stored: column-major m x n.
  p.c = layout(static_cast<uint64_t>(key.m), static_cast<uint64_t>(key.n), key.m,
               key.out_f32 ? CUDA_R_32F : CUDA_R_16BF);
  return p;
}

Gemm::Plan Gemm::make_plan(const Key& key, const void* bias, bool unsplit_only) const {
  Plan p = describe(key, bias);
  // Without split-K the first few picks may all split k: ask for more.
  const std::vector<cublasLtMatmulAlgo_t> best =
      candidates(p, key, unsplit_only ? kCandidates : 1, unsplit_only);
  if (best.empty())
    throw Error(std::string("cuda backend: linear: cuBLASLt has no algorithm") +
                    (unsplit_only ? " without split-K" : "") + " for x [" + std::to_string(key.n) +
                    ", " + std::to_string(key.k) + "], w [" + std::to_string(key.m) + ", " +
                    std::to_string(key.k) + "]",
                kExitOther);
  p.algo = best[0];
  return p;
}

std::vector<cublasLtMatmulAlgo_t> Gemm::candidates(const Plan& p, const Key& key, int count,
                                                   bool unsplit_only) const {
  cublasLtMatmulPreference_t pref_raw = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  MatmulPreference pref(pref_raw);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
           uint64_t{unsplit_only ? 0 : workspace_bytes_});
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_out);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_out);
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(count));
  int found = 0;
  TPINFER_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_.get(), p.desc.get(), p.a.get(),
                                                      p.b.get(), p.c.get(), p.c.get(), pref_raw,
                                                      count, results.data(), &found));
  std::vector<cublasLtMatmulAlgo_t> out;
  for (int i = 0; i < found; ++i) {
    const cublasLtMatmulHeuristicResult_t& r = results[static_cast<size_t>(i)];
    if (r.state != CUBLAS_STATUS_SUCCESS) continue;
    if (unsplit_only) {
      int32_t splits = 1;
      size_t written = 0;
      if (cublasLtMatmulAlgoConfigGetAttribute(&r.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                               sizeof splits, &written) != CUBLAS_STATUS_SUCCESS ||
          splits > 1)
        continue;
    }
    out.push_back(r.algo);
  }
  return out;
}

cublasStatus_t Gemm::launch(const Plan& p, const cublasLtMatmulAlgo_t& algo, const void* x,
                            const void* w, void* out, cudaStream_t stream) const {
  const float alpha = 1.0f, beta = 0.0f;
  return cublasLtMatmul(handle_.get(), p.desc.get(), &alpha, w, p.a.get(), x, p.b.get(), &beta, out,
                        p.c.get(), out, p.c.get(), &algo, workspace_, workspace_bytes_, stream);
}

cublasLtMatmulAlgo_t Gemm::fastest(const Key& key, const void* x, const void* w, const void* bias,
                                   void* out, cudaStream_t stream, int reps) {
  const Plan p = make_plan(key, bias);
  cublasLtMatmulAlgo_t best = p.algo;
  float best_ms = std::numeric_limits<float>::infinity(), first_ms = best_ms;
  for (const cublasLtMatmulAlgo_t& algo : candidates(p, key, kCandidates)) {
    // A warm-up; an algorithm it refuses is skipped.
    if (launch(p, algo, x, w, out, stream) != CUBLAS_STATUS_SUCCESS) continue;
    TPINFER_CUDA_CHECK(cudaEventRecord(start_.get(), stream));
    bool ok = true;
    for (int r = 0; r < reps && ok; ++r)
      ok = launch(p, algo, x, w, out, stream) == CUBLAS_STATUS_SUCCESS;
    TPINFER_CUDA_CHECK(cudaEventRecord(stop_.get(), stream));
    TPINFER_CUDA_CHECK(cudaEventSynchronize(stop_.get()));
    float ms = 0;
    TPINFER_CUDA_CHECK(cudaEventElapsedTime(&ms, start_.get(), stop_.get()));
    if (ok && first_ms == std::numeric_limits<float>::infinity()) first_ms = ms;
    if (ok && ms < best_ms) {
      best_ms = ms;
      best = algo;
    }
  }
  // The heuristic's own pick unless another is clearly faster: a near tie
  // would let timing noise choose, and two runs differ for nothing.
  return best_ms < kMustBeat * first_ms ? best : p.algo;
}

void Gemm::tune(const Key& key, const void* x, const void* w, const void* bias, void* out,
                cudaStream_t stream) {
  Winners& won = winners_[shape_of(key)];
  // Decode buckets are timed at their largest row count, on this call's
  // leading rows (its buffers hold n rows); a larger call is timed at its own n.
  for (int64_t r = kRowStep; r <= std::min(key.n, kDecodeRows); r += kRowStep)
    if (!won.count(r)) {
      Key at = key;
      at.n = r;
      won[r] = fastest(at, x, w, bias, out, stream, kDecodeReps);
    }
  if (key.n > kDecodeRows && !won.count(bucket_of(key.n)))
    won[bucket_of(key.n)] = fastest(key, x, w, bias, out, stream, 1);
  // Plans made before their bucket was timed (say, while a graph was recorded) take the winner.
  for (auto& [k, p] : plans_)
    if (shape_of(k) == shape_of(key)) adopt_winner(k, p);
}

bool Gemm::valid_at(const Plan& p, const cublasLtMatmulAlgo_t& algo) const {
  cublasLtMatmulHeuristicResult_t check{};
  return cublasLtMatmulAlgoCheck(handle_.get(), p.desc.get(), p.a.get(), p.b.get(), p.c.get(),
                                 p.c.get(), &algo, &check) == CUBLAS_STATUS_SUCCESS &&
         check.workspaceSize <= workspace_bytes_;
}

void Gemm::adopt_winner(const Key& key, Plan& p) const {
  const auto shape = winners_.find(shape_of(key));
  if (shape == winners_.end()) return;
  const auto won = shape->second.find(bucket_of(key.n));
  if (won == shape->second.end()) return;
  if (valid_at(p, won->second)) p.algo = won->second;
}

void Gemm::run(const void* x, const void* w, const void* bias, void* out, int64_t n, int64_t k,
               int64_t m, cudaStream_t stream, bool may_time, bool out_f32) {
  if (out_f32 && bias)
    throw Error("cuda backend: linear: a bias with float32 output is not supported", kExitOther);
  Key key{n,
          k,
          m,
          bias != nullptr,
          out_f32,
          alignment_of(x),
          alignment_of(w),
          alignment_of(out),
          bias ? alignment_of(bias) : 256u};
  if (deterministic_) {
    // One alignment class (16 bytes; every tensor from the arena starts on
    // 256), so that the pick for a row count never follows a pointer's alignment.
    for (uint32_t* a : {&key.align_x, &key.align_w, &key.align_out, &key.align_bias}) {
      if (*a < 16)
        throw Error("cuda backend: linear --deterministic: an operand is not 16-byte aligned",
                    kExitOther);
      *a = 16;
    }
    auto it = plans_.find(key);
    if (it == plans_.end())
      it = plans_.emplace(key, make_plan(key, bias, /*unsplit_only=*/true)).first;
    if (bias) set_desc(it->second.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    TPINFER_CUBLAS_CHECK(launch(it->second, it->second.algo, x, w, out, stream));
    return;
  }
  if (tune_ && may_time && n >= kRowStep) {
    const Winners& won = winners_[shape_of(key)];
    const int64_t widest = std::min(n / kRowStep * kRowStep, kDecodeRows);
    if (!won.count(widest) || (n > kDecodeRows && !won.count(bucket_of(n))))
      tune(key, x, w, bias, out, stream);
  }
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    it = plans_.emplace(key, make_plan(key, bias)).first;
    adopt_winner(key, it->second);
  }
  Plan& p = it->second;
  if (bias) set_desc(p.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  TPINFER_CUBLAS_CHECK(launch(p, p.algo, x, w, out, stream));
}

}  // namespace tpinfer::cuda
