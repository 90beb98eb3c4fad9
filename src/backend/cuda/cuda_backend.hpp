#pragma once
// The CUDA backend: bf16 tensors with fp32 accumulation on one GPU, cuBLASLt
// GEMMs, own kernels for the rest, NCCL (or host-staged MPI) collectives over the
// TP group. Defined only in builds with the CUDA backend (CMake found CUDA and
// NCCL; tpinfer_core then carries TPINFER_HAVE_CUDA=1): callers guard their use
// with #if TPINFER_HAVE_CUDA. docs/CUDA_BACKEND.md describes the kernels,
// numerics and memory.
#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>

#include "backend/backend.hpp"
#include "backend/op_profile.hpp"
#include "base/random_fill.hpp"

namespace tpinfer {

struct CudaBackendOptions {
  int device = 0;
  int rank = 0;  // this process's rank in the job, for the lines it prints
  // The backend takes free device memory x memory_fraction in one allocation at
  // construction (after its NCCL communicator and cuBLASLt handle exist); every
  // tensor, the KV cache and all per-step scratch come out of it.
  double memory_fraction = 0.9;
  // When the driver refuses that much, smaller arenas are tried (x0.85 each,
  // a few times, each retry printing a line) but never below this many bytes
  // (what the model needs at the least; 0 = no floor).
  size_t min_arena_bytes = 0;
  // nccl: one process per GPU. mpi: host-staged MPI_Allreduce/MPI_Allgather, for
  // TP ranks that share a GPU (NCCL refuses that) or a missing NCCL transport.
  enum class Collectives { nccl, mpi } collectives = Collectives::nccl;
  // All-reduces of at most this many bytes take tpinfer's own CUDA IPC kernel
  // (src/backend/cuda/ipc_all_reduce.hpp) instead of NCCL or MPI; every rank of
  // the TP group must be on one node. 0: never. Off by default until it is timed
  // against NCCL on several GPUs.
  size_t custom_all_reduce_bytes = 0;
  // Decode steps of up to max_graph_batch sequences run as CUDA graphs, one
  // recorded a batch size (and attention split count) the first time it is
  // seen. Not with mpi collectives, which wait on the host.
  bool graphs = true;
  int64_t max_graph_batch = 512;
  // linear over at most this many rows (decode at small batch) runs tpinfer's
  // weight-streaming GEMV kernel instead of cuBLASLt (0: always cuBLASLt; at
  // most 8). docs/CUDA_BACKEND.md has the measurement that picked the default.
  int gemv_max_rows = 1;
  // Each kernel is launched as the one before it completes, before its memory
  // flush (programmatic dependent launch, src/backend/cuda/launch.cuh); sm_90
  // and later only. Process-wide: the last backend made decides. ~1 % at batch
  // 1 on an H100 (docs/CUDA_BACKEND.md).
  bool programmatic_launch = true;
  // Time every op of every step with CUDA events (bench --op-profile,
  // src/backend/cuda/op_timer.hpp): no CUDA graphs then, and no launch overlap.
  bool op_profile = false;
  // linear times cuBLASLt's candidate algorithms per weight shape and row-count
  // bucket on first use and keeps the fastest (src/backend/cuda/gemm.hpp);
  // off: the heuristic's first pick, the same in every run. Off by default
  // until an A/B on a GPU shows it pays.
  bool gemm_tune = false;
  // Batch-invariant results (--deterministic): a row's outputs do not depend on
  // the other rows of its step, on how its prompt was cut into chunks, or on
  // decode versus prefill. cuBLASLt algorithms without split-K (no GEMV, no
  // tuning; gemm.hpp), every attention row through the prefill
  // kernel's tile order (no batch-chosen splits), all-reduces as a gather
  // summed in rank order, and float32 logits. Bitwise only at one TP size.
  bool deterministic = false;
  // Decode rows' attention on a second stream, beside the prefill rows' in a
  // step that has both (memory-bound beside compute-bound work).
  bool attention_side_stream = false;
  // Prefill attention over a bf16 cache at head_dim 128: mma.sync, or Hopper's
  // warpgroup MMA (wgmma, src/backend/cuda/attention_wgmma.cu; tested on an
  // H100). The wgmma kernel is sm_90 only (the backend refuses it elsewhere)
  // and ignored in the batch-invariant mode, for an fp8 cache and at other head
  // dims (mma.sync there). automatic: wgmma on sm_90, mma.sync elsewhere.
  enum class PrefillAttention { automatic, mma, wgmma };
  PrefillAttention prefill_attention = PrefillAttention::automatic;
};

// The backend on options.device over tp_comm (which it duplicates; the caller
// keeps its own). Collective: every rank of tp_comm must call it. Throws Error
// when the device, cuBLASLt or the communicator cannot be set up, and
// RestartableError when no arena size down to min_arena_bytes can be allocated.
std::unique_ptr<Backend> make_cuda_backend(MPI_Comm tp_comm, const CudaBackendOptions& options);

// dst = the seeded random block `f` describes (base/random_fill.hpp), made on
// the GPU in place (random weights for benchmarks, without a host round trip).
// `backend` must be a cuda backend.
void cuda_fill_random(Backend& backend, const Tensor& dst, const RandomFill& f);

// What a cuda backend has done with CUDA graphs (decode steps recorded, and
// steps replayed from a recording); zeros for any other backend.
struct CudaGraphStats {
  int64_t recorded = 0, replayed = 0;
  int64_t beside = 0;  // attention calls whose decode items ran on the side stream
};
CudaGraphStats cuda_graph_stats(const Backend& backend);

// What a cuda backend made with op_profile timed since the last call
// (backend/op_profile.hpp; empty otherwise, and for any other backend); waits
// for the GPU.
OpProfile take_cuda_op_profile(Backend& backend);

// Visible CUDA devices; 0 when there is no driver or GPU. Never throws.
int cuda_device_count();

// The device's PCI bus id ("0000:1b:00.0", as NVML takes it); "" when unknown.
std::string cuda_pci_bus_id(int device);

}  // namespace tpinfer
