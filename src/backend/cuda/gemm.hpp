#pragma once
// linear's GEMM on cuBLASLt: out[n, m] = x[n, k] w[m, k]^T (+ bias[m]), bf16 in
// and out, fp32 accumulation, the bias added in the epilogue. Row-major x / w /
// out are column-major x^T / w^T / out^T, so cuBLASLt computes
// out^T[m, n] = op(w)[m, k] x^T[k, n] with op = transpose ("TN", the layout
// Hopper's kernels like best).
//
// Descriptors, layouts and the heuristic's algorithm are built once per shape
// (and pointer alignment) and cached: a steady-state call only sets the bias
// pointer and launches.
#include <cstdint>
#include <unordered_map>

#include "backend/cuda/resources.hpp"

namespace tpinfer::cuda {

class Gemm {
 public:
  Gemm();
  // The workspace (device memory the caller owns) cuBLASLt may use; set once
  // before the first run.
  void set_workspace(void* ptr, size_t bytes);
  void run(const void* x, const void* w, const void* bias, void* out, int64_t n, int64_t k,
           int64_t m, cudaStream_t stream);
  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Key {
    int64_t n, k, m;
    bool bias;
    uint32_t align_x, align_w, align_out, align_bias;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Plan {
    MatmulDesc desc;
    MatrixLayout a, b, c;
    cublasLtMatmulAlgo_t algo{};
  };
  Plan make_plan(const Key& key, const void* bias) const;

  LtHandle handle_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::unordered_map<Key, Plan, KeyHash> plans_;
};

}  // namespace tpinfer::cuda
