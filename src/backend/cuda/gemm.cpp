#include "backend/cuda/gemm.hpp"

#include <functional>
#include <string>

#include "base/error.hpp"

namespace tpinfer::cuda {
namespace {

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

MatrixLayout layout(uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, rows, cols, ld));
  return MatrixLayout(l);
}

}  // namespace

size_t Gemm::KeyHash::operator()(const Key& k) const {
  size_t h = std::hash<int64_t>()(k.n);
  auto mix = [&h](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  mix(static_cast<uint64_t>(k.k));
  mix(static_cast<uint64_t>(k.m));
  mix(k.bias);
  mix((uint64_t{k.align_x} << 32) | k.align_w);
  mix((uint64_t{k.align_out} << 32) | k.align_bias);
  return h;
}

Gemm::Gemm() {
  cublasLtHandle_t h = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtCreate(&h));
  handle_ = LtHandle(h);
}

void Gemm::set_workspace(void* ptr, size_t bytes) {
  workspace_ = ptr;
  workspace_bytes_ = bytes;
  plans_.clear();  // the heuristic's choice depends on the workspace size
}

Gemm::Plan Gemm::make_plan(const Key& key, const void* bias) const {
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
  p.c = layout(static_cast<uint64_t>(key.m), static_cast<uint64_t>(key.n), key.m);

  cublasLtMatmulPreference_t pref_raw = nullptr;
  TPINFER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  MatmulPreference pref(pref_raw);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{workspace_bytes_});
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_out);
  set_pref(pref_raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_out);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  TPINFER_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(
      handle_.get(), d, p.a.get(), p.b.get(), p.c.get(), p.c.get(), pref_raw, 1, &result, &found));
  if (found == 0)
    throw Error("cuda backend: linear: cuBLASLt has no algorithm for x [" + std::to_string(key.n) +
                    ", " + std::to_string(key.k) + "], w [" + std::to_string(key.m) + ", " +
                    std::to_string(key.k) + "]",
                kExitOther);
  p.algo = result.algo;
  return p;
}

void Gemm::run(const void* x, const void* w, const void* bias, void* out, int64_t n, int64_t k,
               int64_t m, cudaStream_t stream) {
  const Key key{n,
                k,
                m,
                bias != nullptr,
                alignment_of(x),
                alignment_of(w),
                alignment_of(out),
                bias ? alignment_of(bias) : 256u};
  auto it = plans_.find(key);
  if (it == plans_.end()) it = plans_.emplace(key, make_plan(key, bias)).first;
  Plan& p = it->second;
  if (bias) set_desc(p.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  const float alpha = 1.0f, beta = 0.0f;
  TPINFER_CUBLAS_CHECK(cublasLtMatmul(handle_.get(), p.desc.get(), &alpha, w, p.a.get(), x,
                                      p.b.get(), &beta, out, p.c.get(), out, p.c.get(), &p.algo,
                                      workspace_, workspace_bytes_, stream));
}

}  // namespace tpinfer::cuda
