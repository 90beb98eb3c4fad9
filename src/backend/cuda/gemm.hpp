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
// many rows share the call. cuBLASLt's pick changes kernels, tiles and
// split-K with n, and those can change each output's order of summation. The
// mode's premise: one algorithm configuration (kernel, tile, stages, MMA
// shape, ... without split-K and without workspace) sums each output the same
// way at every n, since n only changes its grid. So each weight shape has a
// reference, the heuristic's unsplit pick at kReferenceRows rows, and a row
// count takes the heuristic's first unsplit pick at that n whose
// configuration gives the reference's bits on a probe: random operands of the
// shape's k, kProbeRows rows, run once per configuration when the stream may
// wait (not while a graph is recorded; then only configurations already
// probed count). Else it runs the reference configuration itself at n. So
// batch 1 keeps a fast kernel where one gives the same bits (on an H100 every
// Llama-3-8B shape did), and where none does, as for small fp32-output
// shapes (w [301, 64] at 1-16 rows, docs/PERF.md session 12), it is the
// reference that runs. All operands in one alignment class (16 bytes).
// CudaDeterministicLinear checks rows bit for bit at 23 row counts from 1 to
// 3,000, on Llama-3-8B's shapes and the test models': re-run it after a cuBLAS
// upgrade. No GEMV, no tuning. Output may be fp32 (the logits); a bias
// then is refused.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
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
  // Deterministic mode: per weight shape, the reference algorithm and which
  // configurations were probed to give its bits.
  using Config = std::array<int64_t, 9>;
  static Config config_of(const cublasLtMatmulAlgo_t& a);
  struct Equivalents {
    cublasLtMatmulAlgo_t reference{};
    std::map<Config, bool> verdicts;      // true: the reference's bits on the probe
    std::vector<uint8_t> reference_bits;  // its probe output
  };
  struct Probe {
    void *x = nullptr, *w = nullptr, *bias = nullptr, *out[2] = {nullptr, nullptr};
    size_t out_bytes = 0;
  };
  static constexpr int64_t kReferenceRows = 256, kProbeRows = 64, kProbeCols = 512;
  Equivalents& equivalents_of(const Key& key, const void* bias);
  // The probe's operands for shape, in the workspace; its plan.
  Plan load_probe(const Key& shape, Probe& probe, cudaStream_t stream);
  std::vector<uint8_t> probe_output(const Plan& p, const Probe& probe,
                                    const cublasLtMatmulAlgo_t& algo, int slot,
                                    cudaStream_t stream) const;
  bool gives_reference_bits(const Key& key, Equivalents& eq, const cublasLtMatmulAlgo_t& algo,
                            cudaStream_t stream);
  bool runs_unsplit_at(const Plan& p, const cublasLtMatmulAlgo_t& algo) const;
  // may_probe: the stream may wait (no capture in progress).
  Plan make_deterministic_plan(const Key& key, const void* bias, bool may_probe,
                               cudaStream_t stream);
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
  std::unordered_map<Key, Equivalents, KeyHash> equivalents_;  // by shape_of
  std::optional<Key> probe_loaded_;  // the shape whose probe operands the workspace holds
  Event start_, stop_;
};

}  // namespace tpinfer::cuda
