#pragma once
// The CUDA backend: bf16 tensors with fp32 accumulation on one GPU, cuBLASLt
// GEMMs, own kernels for the rest, NCCL (or host-staged MPI) collectives over the
// TP group. Defined only in builds with the CUDA backend (CMake found CUDA and
// NCCL; tpinfer_core then carries TPINFER_HAVE_CUDA=1): callers guard their use
// with #if TPINFER_HAVE_CUDA. docs/CUDA_BACKEND.md describes the kernels,
// numerics and memory.
#include <mpi.h>

#include <memory>

#include "tpinfer/backend.hpp"

namespace tpinfer {

struct CudaBackendOptions {
  int device = 0;
  // The backend takes free device memory x memory_fraction in one allocation at
  // construction (after its NCCL communicator and cuBLASLt handle exist); every
  // tensor, the KV cache and all per-step scratch come out of it.
  double memory_fraction = 0.9;
  // nccl: one process per GPU. mpi: host-staged MPI_Allreduce/MPI_Allgather, for
  // TP ranks that share a GPU (NCCL refuses that) or a missing NCCL transport.
  enum class Collectives { nccl, mpi } collectives = Collectives::nccl;
};

// The backend on options.device over tp_comm (which it duplicates; the caller
// keeps its own). Collective: every rank of tp_comm must call it. Throws Error
// when the device, cuBLASLt or the communicator cannot be set up, and
// std::bad_alloc when the memory arena cannot be allocated.
std::unique_ptr<Backend> make_cuda_backend(MPI_Comm tp_comm, const CudaBackendOptions& options);

// Visible CUDA devices; 0 when there is no driver or GPU. Never throws.
int cuda_device_count();

}  // namespace tpinfer
