#include "backend/cuda/collectives.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "backend/cuda/host_convert.hpp"
#include "base/error.hpp"
#include "base/half.hpp"
#include "dist/mpi_check.hpp"
#include "dist/watchdog.hpp"
#include "dist/world.hpp"

namespace tpinfer::cuda {
namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::f16:
      return ncclFloat16;
    case DType::fp8_e4m3:
      break;  // never reduced or gathered (a KV cache type)
  }
  return ncclFloat32;
}

// MPI counts are int: a collective bigger than that goes in pieces.
constexpr int64_t kMpiChunk = int64_t{1} << 30;

}  // namespace

Collectives::Collectives(MPI_Comm comm, CudaBackendOptions::Collectives kind, size_t custom_bytes,
                         cudaStream_t stream)
    : comm_(comm), kind_(kind), stream_(stream) {
  TPINFER_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  TPINFER_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  if (custom_bytes > 0) {
    // CUDA IPC maps memory between processes of one node only.
    MPI_Comm node = MPI_COMM_NULL;
    TPINFER_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int all_local = Comm(node).size() == size_ ? 1 : 0;
    TPINFER_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &all_local, 1, MPI_INT, MPI_MIN, comm_));
    if (!all_local)
      throw UsageError(
          "--custom-all-reduce-kb: the ranks of a TP group span several nodes; CUDA IPC "
          "needs them on one");
    custom_ = std::make_unique<IpcAllReduce>(comm_, custom_bytes);
  }
  if (kind_ != CudaBackendOptions::Collectives::nccl) return;
  // A peer that died before or during the bootstrap must not leave this rank
  // waiting in ncclCommInitRank until the job's time limit.
  watchdog::Guard guard("nccl_setup");
  // Rank 0 makes the id; its status travels with it so that a failure there
  // fails every rank instead of leaving the others waiting in ncclCommInitRank.
  struct {
    int status;
    ncclUniqueId id;
  } msg{};
  if (rank_ == 0) msg.status = static_cast<int>(ncclGetUniqueId(&msg.id));
  TPINFER_MPI_CHECK(MPI_Bcast(&msg, sizeof msg, MPI_BYTE, 0, comm_));
  TPINFER_NCCL_CHECK(msg.status);
  ncclComm_t c = nullptr;
  TPINFER_NCCL_CHECK(ncclCommInitRank(&c, size_, msg.id, rank_));
  nccl_ = NcclComm(c);
  // The watchdog polls the communicator for asynchronous errors (a peer's
  // network or NVLink failure surfaces there, not as a return code) and aborts
  // it before ending the job, so that kernels spinning on a dead peer return.
  // Both calls are documented as safe from another thread.
  watchdog_hook_ = watchdog::Hook(
      [c]() -> std::string {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(c, &async) != ncclSuccess || async == ncclSuccess) return "";
        return std::string("NCCL asynchronous error: ") + ncclGetErrorString(async);
      },
      [c]() { ncclCommAbort(c); });
}

void Collectives::stage_down(const void* src, size_t bytes) {
  pinned_.reserve(bytes);
  TPINFER_CUDA_CHECK(cudaMemcpyAsync(pinned_.data(), src, bytes, cudaMemcpyDeviceToHost, stream_));
  TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void Collectives::all_reduce_sum(void* data, int64_t count, DType dtype) {
  if (count == 0) return;
  watchdog::Guard guard("all_reduce_sum");
  if (custom_ && static_cast<size_t>(count) * dtype_bytes(dtype) <= custom_->capacity()) {
    custom_->all_reduce_sum(data, count, dtype, stream_);
    return;
  }
  if (kind_ == CudaBackendOptions::Collectives::nccl) {
    TPINFER_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), nccl_type(dtype),
                                     ncclSum, nccl_.get(), stream_));
    return;
  }
  const size_t bytes = static_cast<size_t>(count) * dtype_bytes(dtype);
  stage_down(data, bytes);
  const size_t n = static_cast<size_t>(count);
  float* sum = static_cast<float*>(pinned_.data());
  if (dtype != DType::f32) {
    wide_.resize(n);
    auto* half = static_cast<uint16_t*>(pinned_.data());
    if (dtype == DType::bf16)
      bf16_to_floats(half, wide_.data(), n);
    else
      f16_to_floats(half, wide_.data(), n);
    sum = wide_.data();
  }
  for (int64_t off = 0; off < count; off += kMpiChunk) {
    const int c = static_cast<int>(std::min(kMpiChunk, count - off));
    TPINFER_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum + off, c, MPI_FLOAT, MPI_SUM, comm_));
  }
  if (dtype == DType::bf16)
    floats_to_bf16(wide_.data(), static_cast<uint16_t*>(pinned_.data()), n);
  else if (dtype == DType::f16)
    floats_to_f16(wide_.data(), static_cast<uint16_t*>(pinned_.data()), n);
  // pinned_ is not touched again before the next collective's stage_down,
  // which the stream orders after this copy.
  TPINFER_CUDA_CHECK(cudaMemcpyAsync(data, pinned_.data(), bytes, cudaMemcpyHostToDevice, stream_));
}

void Collectives::all_gather(const void* local, void* out, int64_t count, DType dtype) {
  if (count == 0) return;
  watchdog::Guard guard("all_gather");
  if (kind_ == CudaBackendOptions::Collectives::nccl) {
    TPINFER_NCCL_CHECK(ncclAllGather(local, out, static_cast<size_t>(count), nccl_type(dtype),
                                     nccl_.get(), stream_));
    return;
  }
  const int64_t bytes = count * dtype_bytes(dtype);
  if (bytes > INT_MAX)
    throw Error("cuda backend: all_gather of " + std::to_string(bytes) +
                    " bytes a rank exceeds an MPI count",
                kExitOther);
  stage_down(local, static_cast<size_t>(bytes));
  const size_t total = static_cast<size_t>(bytes) * static_cast<size_t>(size_);
  // The previous gather's copy up from pinned_out_ must be done before it is
  // overwritten: stage_down synchronised the stream, which covers it.
  pinned_out_.reserve(total);
  TPINFER_MPI_CHECK(MPI_Allgather(pinned_.data(), static_cast<int>(bytes), MPI_BYTE,
                                  pinned_out_.data(), static_cast<int>(bytes), MPI_BYTE, comm_));
  TPINFER_CUDA_CHECK(
      cudaMemcpyAsync(out, pinned_out_.data(), total, cudaMemcpyHostToDevice, stream_));
}

}  // namespace tpinfer::cuda
