#include "cli/replica.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "tpinfer/error.hpp"
#if TPINFER_HAVE_CUDA
#include "tpinfer/cuda_backend.hpp"
#endif

namespace tpinfer {

void add_replica_options(po::options_description& desc, ReplicaOptions& o) {
  desc.add_options()("backend", po::value(&o.backend)->default_value(o.backend),
                     "cpu | cuda | auto (cuda when this build has it and a GPU is visible)")(
      "collectives", po::value(&o.collectives)->default_value(o.collectives),
      "cuda TP collectives: nccl | mpi (host-staged) | auto (mpi exactly when a TP group's "
      "ranks share a GPU)")("cuda-graphs", po::value(&o.cuda_graphs)->default_value(o.cuda_graphs),
                            "cuda: run decode steps as CUDA graphs (on | off)")(
      "cuda-pdl", po::value(&o.cuda_pdl)->default_value(o.cuda_pdl),
      "cuda: launch each kernel as the one before it completes, before its memory flush "
      "(programmatic dependent launch, sm_90 and later; on | off)")(
      "cuda-gemv-rows", po::value(&o.cuda_gemv_rows)->default_value(o.cuda_gemv_rows),
      "cuda: linear layers over at most this many rows use tpinfer's GEMV kernel instead of "
      "cuBLASLt (0 = always cuBLASLt, at most 8)")(
      "custom-all-reduce-kb",
      po::value(&o.custom_all_reduce_kb)->default_value(o.custom_all_reduce_kb),
      "cuda: TP all-reduces of at most this many KiB run tpinfer's own CUDA IPC kernel instead "
      "of NCCL / MPI (a TP group's ranks on one node; 0 = off, the default until it is timed "
      "against NCCL on several GPUs)")(
      "memory-fraction", po::value(&o.memory_fraction)->default_value(o.memory_fraction),
      "cuda: share of free GPU memory to take (split among ranks on one GPU)")(
      "threads", po::value(&o.threads)->default_value(o.threads),
      "cpu backend threads per rank (0 = cores / ranks on this node)")(
      "block-size", po::value(&o.block_size)->default_value(o.block_size),
      "KV-cache block size in tokens")(
      "max-batch", po::value(&o.max_batch)->default_value(o.max_batch),
      "sequences in flight per data-parallel group (0 = 256 on cuda, 64 on cpu)")(
      "max-step-tokens", po::value(&o.max_step_tokens)->default_value(o.max_step_tokens),
      "tokens per forward step, prefill chunks + decodes (0 = 8192 on cuda, 512 on cpu)")(
      "kv-cache-mb", po::value(&o.kv_cache_mb)->default_value(o.kv_cache_mb),
      "cpu: KV-cache size per rank in MiB (0 = what --max-batch full-length sequences need, at "
      "most a quarter of this node's memory share)")(
      "kv-blocks", po::value(&o.kv_blocks)->default_value(o.kv_blocks),
      "KV-cache size per rank in blocks (overrides the sizing; for tests and tuning)")(
      "kv-cache-dtype", po::value(&o.kv_cache_dtype)->default_value(o.kv_cache_dtype),
      "KV-cache storage: auto (the compute dtype: bf16 on cuda, float32 on cpu) | fp8 "
      "(float8 e4m3, unscaled: half the bytes of bf16, so more sequences fit and decode reads "
      "half; values keep 3 mantissa bits)")(
      "verify-weights", po::value(&o.verify_weights)->default_value(o.verify_weights),
      "check every weight read from the model file against its stored checksums (on | off; "
      "off is for measuring load speed only)");
}

namespace {
// "--NAME VALUE is not one of A, B, C" unless value is one of them.
void check_one_of(const char* option, const std::string& value,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  throw UsageError(std::string("--") + option + " " + value + " is not one of " + list);
}
}  // namespace

void check_replica_options(const ReplicaOptions& o) {
  check_one_of("backend", o.backend, {"cpu", "cuda", "auto"});
  check_one_of("collectives", o.collectives, {"nccl", "mpi", "auto"});
  check_one_of("cuda-graphs", o.cuda_graphs, {"on", "off"});
  check_one_of("cuda-pdl", o.cuda_pdl, {"on", "off"});
  check_one_of("verify-weights", o.verify_weights, {"on", "off"});
  if (o.cuda_gemv_rows < 0 || o.cuda_gemv_rows > 8)
    throw UsageError("--cuda-gemv-rows " + std::to_string(o.cuda_gemv_rows) + " is not in 0..8");
  if (!(o.memory_fraction > 0 && o.memory_fraction <= 1))
    throw UsageError("--memory-fraction must be in (0, 1]");
  check_one_of("kv-cache-dtype", o.kv_cache_dtype, {"auto", "fp8"});
  if (o.block_size < 1) throw UsageError("--block-size must be >= 1");
  if (o.threads < 0) throw UsageError("--threads must be >= 0 (0 = cores / ranks on this node)");
  if (o.kv_cache_mb < 0) throw UsageError("--kv-cache-mb must be >= 0 (0 = sized from memory)");
  if (o.kv_blocks < 0) throw UsageError("--kv-blocks must be >= 0 (0 = sized from memory)");
  if (o.custom_all_reduce_kb < 0 || o.custom_all_reduce_kb > 65536)
    throw UsageError("--custom-all-reduce-kb " + std::to_string(o.custom_all_reduce_kb) +
                     " is not in 0..65536");
  if (o.max_batch < 0 || o.max_step_tokens < 0)
    throw UsageError(
        "--max-batch and --max-step-tokens must be >= 1, or 0 for the backend's default");
#if !TPINFER_HAVE_CUDA
  if (o.backend == "cuda")
    throw UsageError(
        "--backend cuda: this build has no CUDA backend (configure with CUDA and "
        "NCCL installed, -DTPINFER_CUDA=ON)");
#endif
}

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
  int64_t budget = r.backend->bytes_free();
  if (budget >= 0) {
    // Device arena: keep a little for what the backend allocates lazily.
    budget = std::max<int64_t>(0, budget - (int64_t{64} << 20));
  } else if (o.kv_cache_mb > 0) {
    budget = o.kv_cache_mb * (int64_t{1} << 20);
  } else {
    const int64_t node = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    budget = node / 4 / w.local_size;
  }
  const int64_t fit = budget / per_block;
  const int64_t blocks =
      o.kv_cache_mb > 0 && r.backend->bytes_free() < 0 ? fit : std::min(want, fit);
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
  co.programmatic_launch = o.cuda_pdl == "on";
  co.custom_all_reduce_bytes = static_cast<size_t>(o.custom_all_reduce_kb) * 1024;
  r.description =
      "cuda (GPU " + std::to_string(co.device) + " of " + std::to_string(gpus) +
      (sharing > 1 ? ", shared by " + std::to_string(sharing) + " ranks" : "") +
      (w.tp > 1 ? std::string(", ") + (use_mpi ? "MPI" : "NCCL") + " collectives" : "") +
      (co.programmatic_launch ? "" : ", --cuda-pdl off") + ")";
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
    r.backend = make_cpu_backend(w.tp_comm.get(), threads);
    r.description = "cpu (" + std::to_string(threads) + " threads/rank)";
  }
  const int64_t arena_free = r.backend->bytes_free();  // < 0: no device arena
  r.kv_dtype = kv_cache_dtype(o, r.backend->compute_dtype());
  const bool on_gpu = arena_free >= 0;
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
    if (arena_free < 0) throw;
    // The arena was allocated; what this rank must hold does not fit in it.
    char share[128];
    std::snprintf(share, sizeof share, "%.0f MiB share (--memory-fraction %.2f of free memory)",
                  static_cast<double>(arena_free) / (1 << 20), o.memory_fraction);
    throw ModelError("GPU memory: rank " + std::to_string(w.rank) +
                     "'s weight shards, workspace and KV cache do not fit in its " + share +
                     "; use more --tp ranks, a larger --memory-fraction, fewer ranks per GPU or "
                     "a smaller --kv-blocks");
  }
  return r;
}

}  // namespace tpinfer
