#pragma once
// The TP group's collectives for the cuda backend, in one of two ways:
//  - NCCL: a communicator made from an ncclUniqueId that tp rank 0 creates and
//    MPI_Bcast sends; the collectives run on the backend's stream.
//  - MPI, host-staged: copy to pinned host memory, MPI_Allreduce (in fp32: 16-bit
//    values are widened, summed, rounded back once) / MPI_Allgather, copy back.
//    For TP ranks that share a GPU, which NCCL refuses.
// Either way, all-reduces up to custom_bytes go through IpcAllReduce instead.
// Construction is collective over the communicator. A group of one rank never
// gets here (the backend handles it).
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/ipc_all_reduce.hpp"
#include "backend/cuda/resources.hpp"
#include "base/dtype.hpp"
#include "dist/watchdog.hpp"

namespace tpinfer::cuda {

class Collectives {
 public:
  // comm: the backend's own duplicate of the TP communicator (not owned).
  Collectives(MPI_Comm comm, CudaBackendOptions::Collectives kind, size_t custom_bytes,
              cudaStream_t stream);
  void all_reduce_sum(void* data, int64_t count, DType dtype);
  // out holds size() * count elements, rank r's at r * count.
  void all_gather(const void* local, void* out, int64_t count, DType dtype);

 private:
  void stage_down(const void* src, size_t bytes);  // device -> pinned_, then waits
  MPI_Comm comm_;
  int size_ = 1, rank_ = 0;
  CudaBackendOptions::Collectives kind_;
  cudaStream_t stream_;
  NcclComm nccl_;
  watchdog::Hook watchdog_hook_;  // after nccl_: unregistered before the communicator goes
  PinnedBuffer pinned_, pinned_out_;
  std::vector<float> wide_;  // fp32 copy of a 16-bit all-reduce
  std::unique_ptr<IpcAllReduce> custom_;
};

}  // namespace tpinfer::cuda
