#pragma once
// linear's GEMM on cuBLASLt: out[n, m] = x[n, k] w[m, k]^T (+ bias[m]), bf16 in
// and out, fp32 accumulation, the bias added in the epilogue. Row-major x / w /
// out are column-major x^T / w^T / out^T, so cuBLASLt computes
// out^T[m, n] = op(w)[m, k] x^T[k, n] with op = transpose ("TN", the layout
// Hopper's kernels like best).
//
// Descriptors, layouts and the algorithm are built once per shape (and
// pointer alignment) and cached: a steady-state call only sets the bias
// pointer and launches.
//
// The algorithm: cuBLASLt's heuristic names its best guess first, and at the
// row counts of batched decode (n = 32-512, near the ridge point) that guess
// is often not the fastest of the few it lists. With tuning on, the first
// call of a weight shape that may wait for the GPU (not while a CUDA graph is
// recorded) times the heuristic's candidates on its own operands, for every
// 32-row bucket of decode rows up to 512 that it has rows for, and for its own
// power-of-two bucket above that; every later shape in a bucket takes the
// bucket's winner (checked valid for its size). A winner must beat the
// heuristic's pick by 3 %; still, it depends on timing, so two processes may
// pick differently and differ in the last bits (tuning off: the same pick in
// every run).
//
// Deterministic mode (--deterministic): a row's outputs must not depend on how
// many rows share the call. cuBLASLt's pick changes tiles and split-K with n,
// and split-K changes each output's order of summation; so the mode takes the
// heuristic's pick per row count among algorithms without split-K and without
// workspace, in one alignment class (16 bytes). On sm_90 that leaves a row's
// bits independent of n for Llama-3-8B's shapes (CudaDeterministicLinear
// checks 23 row counts from 1 to 3,000: re-run it after a cuBLAS upgrade), but
// not for small weights: an fp32 LM head w [500, 512] at 1 row gave other bits
// (docs/PERF.md, sessions 12-13), and neither one algorithm family nor one
// probed configuration per shape held. So the backend sends weights of fewer
// than kDeterministicGemvElements elements to launch_gemv_rows (gemv.cu),
// whose order of summation is fixed by construction, and only larger ones
// here. It keeps the heuristic's speed at each n; one fixed algorithm for
// every n, also tried, cost 60 % at batch 1 (docs/PERF.md). No tuning.
// Output may be fp32 (the logits); a bias then is refused.
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "backend/cuda/resources.hpp"

namespace tpinfer::cuda {

class Gemm {
 public:
  explicit Gemm(bool tune = false, bool deterministic = false);
  // The workspace (device memory the caller owns) cuBLASLt may use; set once
  // before the first run.
  void set_workspace(void* ptr, size_t bytes);
  // may_time: the call may synchronize the stream (no capture in progress).
  // out_f32: out is float32 (else bf16).
  void run(const void* x, const void* w, const void* bias, void* out, int64_t n, int64_t k,
           int64_t m, cudaStream_t stream, bool may_time = false, bool out_f32 = false);
  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Key {
    int64_t n, k, m;
    bool bias;
    bool out_f32;
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
  // One weight shape's winners: bucket (the most rows it covers) -> algorithm.
  using Winners = std::map<int64_t, cublasLtMatmulAlgo_t>;
  // The tuning key: the GEMM key with n = 0.
  static Key shape_of(Key key) {
    key.n = 0;
    return key;
  }
  static constexpr int64_t kRowStep = 32, kDecodeRows = 512;
  // The most rows of n's bucket: 32-row steps up to 512, then powers of two.
  static int64_t bucket_of(int64_t n);

  // Descriptors and layouts for key, without an algorithm.
  Plan describe(const Key& key, const void* bias) const;
  // describe() with the heuristic's first pick (unsplit_only: among those without split-K).
  Plan make_plan(const Key& key, const void* bias, bool unsplit_only = false) const;
  bool valid_at(const Plan& p, const cublasLtMatmulAlgo_t& algo) const;
  // Up to `count` of the heuristic's algorithms for the plan's shape, best guess first.
  // unsplit_only: no workspace, and no algorithm that splits k.
  std::vector<cublasLtMatmulAlgo_t> candidates(const Plan& p, const Key& key, int count,
                                               bool unsplit_only = false) const;
  cublasStatus_t launch(const Plan& p, const cublasLtMatmulAlgo_t& algo, const void* x,
                        const void* w, void* out, cudaStream_t stream) const;
  // The fastest candidate at key's shape, timed on these operands.
  cublasLtMatmulAlgo_t fastest(const Key& key, const void* x, const void* w, const void* bias,
                               void* out, cudaStream_t stream, int reps);
  // The bucket's winner for p's shape, when there is one and it is valid at p's size.
  void adopt_winner(const Key& key, Plan& p) const;
  void tune(const Key& key, const void* x, const void* w, const void* bias, void* out,
            cudaStream_t stream);

  LtHandle handle_;
  bool tune_ = false;
  bool deterministic_ = false;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::unordered_map<Key, Plan, KeyHash> plans_;
  std::unordered_map<Key, Winners, KeyHash> winners_;
  Event start_, stop_;
};

}  // namespace tpinfer::cuda
