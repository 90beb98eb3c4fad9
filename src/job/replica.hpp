#pragma once
// One rank's share of a model replica: the backend it computes on and its
// model shard with KV cache and workspace. Shared by `run` and `bench`.
#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "dist/world.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"

namespace tpinfer {

struct ReplicaOptions {
  std::string backend = "auto";      // cpu | cuda | auto (cuda when a GPU is visible)
  std::string collectives = "auto";  // auto | nccl | mpi (cuda only)
  std::string cuda_graphs = "on";    // on | off (cuda only)
  std::string cuda_pdl = "on";       // on | off (cuda only): programmatic dependent launch
  int cuda_attention_streams = 2;    // cuda: 2 runs decode attention beside prefill attention
  std::string cuda_prefill_attention =
      "auto";                          // cuda: auto | mma | wgmma (Hopper) prefill attention
  std::string cuda_gemm_tune = "off";  // on | off (cuda only): time cuBLASLt's candidates
  int cuda_gemv_rows = 1;              // cuda: linear with <= this many rows uses the own GEMV
  int64_t cuda_graph_max_batch = 512;  // cuda: decode steps of up to this many sequences are graphs
  int64_t custom_all_reduce_kb = 0;    // cuda: all-reduces up to this size use the own IPC kernel
  double memory_fraction = 0.9;        // of free GPU memory, split among ranks sharing a GPU
  int threads = 0;                     // cpu: per rank, 0 = cores / ranks on this node
  int block_size = 16;
  int max_batch = 0;        // 0 = by backend: kMaxBatchCuda / kMaxBatchCpu
  int max_step_tokens = 0;  // 0 = by backend: kMaxStepTokensCuda / kMaxStepTokensCpu
  int64_t kv_cache_mb = 0;
  int64_t kv_blocks = 0;
  std::string kv_cache_dtype = "auto";  // auto (the compute dtype) | fp8
  std::string verify_weights = "on";    // on | off: check the model file's checksums as read
  std::string prefix_cache = "on";      // on | off: share the KV blocks of common prefixes
  int decode_step_tokens = 512;         // token budget of a step with decodes (0 = max_step_tokens)
  std::string admission = "longest-output";  // arrival | longest-output: the waiting queue's order
  bool cuda_op_profile = false;              // cuda: time every op (bench --op-profile)
  // Batch-invariant kernels (cuda; the cpu backend always is): a request's
  // tokens and logprobs do not depend on the rest of the batch.
  bool deterministic = false;
};

// A GPU decodes 256 sequences in little more time than 64 (the step streams the
// weights either way) and runs 8192-token prompt chunks near its GEMM peak; the
// cpu backend's step time grows with every row, so it keeps steps small.
inline constexpr int kMaxBatchCuda = 256, kMaxStepTokensCuda = 8192;
inline constexpr int kMaxBatchCpu = 64, kMaxStepTokensCpu = 512;

struct Replica {
  std::unique_ptr<Backend> backend;
  Model model;
  DType kv_dtype = DType::f32;  // of the KV cache
  int max_batch = 0;            // sequences in flight, --max-batch or the backend's default
  int max_step_tokens = 0;      // tokens per forward, --max-step-tokens or the backend's
  std::string description;      // backend, device and threads, for the start-up line
  std::string gpu_pci_bus_id;   // the GPU this rank computes on (cuda), for NVML; "" on the cpu
};

// Collective over the world: picks and builds the backend (GPU = node-local
// rank modulo visible GPUs; collectives over MPI where TP ranks share a GPU),
// loads this rank's shards through `fill`, then sizes the KV cache from what is
// left (cuda) or from --kv-cache-mb / the node's memory (cpu).
Replica make_replica(const World& w, const ModelConfig& config, const ShardFiller& fill,
                     const ReplicaOptions& o);

// The engine's options for this replica: the model's limits, its KV cache, and
// the scheduling options; max_running sequences in flight (bench sweeps it).
EngineOptions engine_options(const ModelConfig& config, const Replica& r, const ReplicaOptions& o,
                             int max_running);

}  // namespace tpinfer
