#include "job/replica.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "base/error.hpp"
#include "dist/mpi_check.hpp"
#include "dist/mpi_collectives.hpp"
#if TPINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace tpinfer {

namespace {

// The KV cache's dtype under --kv-cache-dtype on a backend computing in `compute`.
DType kv_cache_dtype(const ReplicaOptions& o, DType compute) {
  return o.kv_cache_dtype == "fp8" ? DType::fp8_e4m3 : compute;
}

int default_threads(const World& w) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / w.local_size);
}

// KV blocks: enough for max_batch full-length sequences unless memory says less.
int kv_blocks(const ReplicaOptions& o, const Replica& r, const World& w) {
  if (o.kv_blocks > 0) return static_cast<int>(std::min<int64_t>(o.kv_blocks, 1 << 30));
  const Model& m = r.model;
  const int64_t per_block = kv_bytes_per_block(m.config, m.shard, o.block_size, r.kv_dtype);
  const int64_t blocks_per_seq =
      (m.config.max_position_embeddings + o.block_size - 1) / o.block_size;
  const int64_t want = blocks_per_seq * r.max_batch;
  const std::optional<int64_t> arena_free = r.backend->memory_info().arena_free_bytes;
  int64_t budget = 0;
  if (arena_free) {
    // Device arena: keep a little for what the backend allocates lazily.
    budget = std::max<int64_t>(0, *arena_free - (int64_t{64} << 20));
  } else if (o.kv_cache_mb > 0) {
    budget = o.kv_cache_mb * (int64_t{1} << 20);
  } else {
    const int64_t node = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    budget = node / 4 / w.local_size;
  }
  const int64_t fit = budget / per_block;
  const int64_t blocks = o.kv_cache_mb > 0 && !arena_free ? fit : std::min(want, fit);
  if (blocks < 1)
    throw UsageError("no memory left for the KV cache: one block is " + std::to_string(per_block) +
                     " bytes and " + std::to_string(budget) + " are available");
  return static_cast<int>(std::min<int64_t>(blocks, 1 << 30));
}

#if TPINFER_HAVE_CUDA
// The least arena that can run the model: this rank's weight shards in the
// compute dtype and one max-length sequence's KV cache (workspace on top). A
// refused arena is retried smaller only down to this.
size_t arena_floor_bytes(const World& w, const ModelConfig& c, const ReplicaOptions& o) {
  const int64_t esz = dtype_bytes(DType::bf16);
  int64_t bytes = 0;
  for (const auto& t : expected_tensors(c)) bytes += shard_of(c, t, w.tp_rank, w.tp).numel() * esz;
  const int64_t blocks_per_seq = (c.max_position_embeddings + o.block_size - 1) / o.block_size;
  const DType kv = kv_cache_dtype(o, DType::bf16);
  bytes +=
      blocks_per_seq * kv_bytes_per_block(c, shard_layout(c, w.tp_rank, w.tp), o.block_size, kv);
  return static_cast<size_t>(bytes);
}

// The node-local rank picks the GPU (CUDA_VISIBLE_DEVICES has already renumbered
// them); under srun SLURM_LOCALID is that same index. Several ranks may share one.
std::unique_ptr<Backend> make_cuda(const World& w, const ModelConfig& config,
                                   const ReplicaOptions& o, int gpus, Replica& r) {
  const char* slurm_local = std::getenv("SLURM_LOCALID");
  const int local = slurm_local ? std::atoi(slurm_local) : w.local_rank;
  CudaBackendOptions co;
  co.device = local % gpus;
  co.rank = w.rank;
  // Ranks of this node on the same GPU split its memory.
  std::vector<int> devices(static_cast<size_t>(w.local_size));
  TPINFER_MPI_CHECK(
      MPI_Allgather(&co.device, 1, MPI_INT, devices.data(), 1, MPI_INT, w.node_comm.get()));
  const auto sharing = std::count(devices.begin(), devices.end(), co.device);
  co.memory_fraction = o.memory_fraction / static_cast<double>(sharing);
  co.min_arena_bytes = arena_floor_bytes(w, config, o);
  r.gpu_pci_bus_id = cuda_pci_bus_id(co.device);
  // NCCL refuses two ranks of one communicator on one GPU: then stage through MPI.
  int shared_in_tp = 0;
  {
    // (node, device) pairs of the TP group; a repeat means a shared GPU.
    char name[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    TPINFER_MPI_CHECK(MPI_Get_processor_name(name, &len));
    long long mine[2] = {static_cast<long long>(std::hash<std::string>{}(std::string(name, len))),
                         co.device};
    std::vector<long long> all(2 * static_cast<size_t>(w.tp));
    TPINFER_MPI_CHECK(
        MPI_Allgather(mine, 2, MPI_LONG_LONG, all.data(), 2, MPI_LONG_LONG, w.tp_comm.get()));
    for (int i = 0; i < w.tp; ++i)
      for (int j = i + 1; j < w.tp; ++j)
        if (all[2 * i] == all[2 * j] && all[2 * i + 1] == all[2 * j + 1]) shared_in_tp = 1;
  }
  if (o.collectives == "nccl" && shared_in_tp)
    throw UsageError(
        "--collectives nccl: ranks of one TP group share a GPU, which NCCL refuses "
        "(use --collectives mpi or auto, or one rank per GPU)");
  const bool use_mpi = o.collectives == "mpi" || (o.collectives == "auto" && shared_in_tp);
  co.collectives =
      use_mpi ? CudaBackendOptions::Collectives::mpi : CudaBackendOptions::Collectives::nccl;
  co.graphs = o.cuda_graphs == "on";
  co.gemv_max_rows = o.cuda_gemv_rows;
  co.max_graph_batch = o.cuda_graph_max_batch;
  co.programmatic_launch = o.cuda_pdl == "on";
  co.attention_side_stream = o.cuda_attention_streams == 2;
  co.prefill_attention =
      o.cuda_prefill_attention == "wgmma" ? CudaBackendOptions::PrefillAttention::wgmma
      : o.cuda_prefill_attention == "mma" ? CudaBackendOptions::PrefillAttention::mma
                                          : CudaBackendOptions::PrefillAttention::automatic;
  co.op_profile = o.cuda_op_profile;
  co.gemm_tune = o.cuda_gemm_tune == "on";
  co.deterministic = o.deterministic;
  co.custom_all_reduce_bytes = static_cast<size_t>(o.custom_all_reduce_kb) * 1024;
  r.description =
      "cuda (GPU " + std::to_string(co.device) + " of " + std::to_string(gpus) +
      (sharing > 1 ? ", shared by " + std::to_string(sharing) + " ranks" : "") +
      (w.tp > 1 ? std::string(", ") + (use_mpi ? "MPI" : "NCCL") + " collectives" : "") +
      (co.programmatic_launch ? "" : ", --cuda-pdl off") +
      (co.deterministic ? ", deterministic" : "") + ")";
  return make_cuda_backend(w.tp_comm.get(), co);
}
#endif

}  // namespace

Replica make_replica(const World& w, const ModelConfig& config, const ShardFiller& fill,
                     const ReplicaOptions& o) {
  Replica r;
#if TPINFER_HAVE_CUDA
  const int gpus = o.backend == "cpu" ? 0 : cuda_device_count();
  if (o.backend == "cuda" && gpus == 0)
    throw UsageError("--backend cuda: no GPU is visible to this process");
  if (gpus > 0) r.backend = make_cuda(w, config, o, gpus, r);
#endif
  if (!r.backend) {
    const int threads = o.threads > 0 ? o.threads : default_threads(w);
    r.backend = make_cpu_backend(mpi_collectives(w.tp_comm.get()), threads);
    r.description = "cpu (" + std::to_string(threads) + " threads/rank)";
  }
  // Before the load: what the arena held when the weights went in.
  const std::optional<int64_t> arena_free = r.backend->memory_info().arena_free_bytes;
  r.kv_dtype = kv_cache_dtype(o, r.backend->compute_dtype());
  const bool on_gpu = r.backend->device_kind() == DeviceKind::cuda;
  r.max_batch = o.max_batch > 0 ? o.max_batch : on_gpu ? kMaxBatchCuda : kMaxBatchCpu;
  r.max_step_tokens = o.max_step_tokens > 0 ? o.max_step_tokens
                      : on_gpu              ? kMaxStepTokensCuda
                                            : kMaxStepTokensCpu;
  if (r.kv_dtype == DType::fp8_e4m3) r.description += ", fp8 KV cache";
  try {
    r.model = load_model(*r.backend, config, w.tp_rank, w.tp, fill);
    allocate_workspace(r.model, *r.backend, r.max_step_tokens,
                       std::min(r.max_batch, r.max_step_tokens));
    allocate_kv_cache(r.model, *r.backend, kv_blocks(o, r, w), o.block_size, r.kv_dtype);
  } catch (const std::bad_alloc&) {
    if (!arena_free) throw;
    // The arena was allocated; what this rank must hold does not fit in it.
    char share[128];
    std::snprintf(share, sizeof share, "%.0f MiB share (--memory-fraction %.2f of free memory)",
                  static_cast<double>(*arena_free) / (1 << 20), o.memory_fraction);
    throw ModelError("GPU memory: rank " + std::to_string(w.rank) +
                     "'s weight shards, workspace and KV cache do not fit in its " + share +
                     "; use more --tp ranks, a larger --memory-fraction, fewer ranks per GPU or "
                     "a smaller --kv-blocks");
  }
  return r;
}

EngineOptions engine_options(const ModelConfig& config, const Replica& r, const ReplicaOptions& o,
                             int max_running) {
  EngineOptions eo;
  eo.vocab_size = config.vocab_size;
  eo.max_context = config.max_position_embeddings;
  eo.eos_token_ids = config.eos_token_ids;
  eo.block_size = o.block_size;
  eo.num_blocks = r.model.cache.num_blocks;
  eo.max_running = max_running;
  eo.max_step_tokens = r.max_step_tokens;
  eo.prefix_cache = o.prefix_cache == "on";
  eo.decode_step_tokens = o.decode_step_tokens;
  eo.longest_output_first = o.admission == "longest-output";
  return eo;
}

}  // namespace tpinfer
