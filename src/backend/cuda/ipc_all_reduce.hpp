#pragma once
// tpinfer's own all-reduce for small (decode-sized) messages over CUDA IPC: each
// rank of the TP group maps its peers' buffers (on other GPUs of the node over
// NVLink / PCIe, or on its own GPU when ranks share one), and one kernel per
// call copies this rank's values into its buffer, meets the peers at a flag
// barrier, and sums every rank's values in rank order in fp32. No NVLink
// multicast. Every rank computes the same sums in the same order, so the ranks
// agree bit for bit; against NCCL (another order) they agree to rounding.
//
// The buffers alternate by call (a rank starts call t + 2 only after every peer
// has begun call t + 1, and so finished reading call t), so one barrier a call
// suffices. The call counter lives on the device, which keeps the kernel
// replayable inside CUDA graphs. Construction is collective over the communicator.
#include <mpi.h>

#include <cstdint>
#include <vector>

#include "backend/cuda/resources.hpp"
#include "base/dtype.hpp"

namespace tpinfer::cuda {

constexpr int kIpcMaxRanks = 8;
constexpr int kIpcMaxBlocks = 64;

struct IpcPeers {
  char* data[kIpcMaxRanks];       // each rank's two message buffers, as mapped here
  uint32_t* flags[kIpcMaxRanks];  // each rank's [kIpcMaxBlocks][kIpcMaxRanks] arrival flags
};

class IpcAllReduce {
 public:
  // comm: the TP group (all ranks on this node); capacity: the largest message in bytes.
  IpcAllReduce(MPI_Comm comm, size_t capacity_bytes);
  ~IpcAllReduce();
  IpcAllReduce(const IpcAllReduce&) = delete;
  IpcAllReduce& operator=(const IpcAllReduce&) = delete;

  size_t capacity() const { return capacity_; }
  // In place on `stream`; bytes of count x dtype at most capacity(); dtype f32, bf16 or f16.
  void all_reduce_sum(void* data, int64_t count, DType dtype, cudaStream_t stream);

 private:
  int rank_ = 0, size_ = 1;
  size_t capacity_ = 0;
  DeviceMemory own_;           // flags, control words, then two message buffers
  std::vector<void*> mapped_;  // peers' memory opened here (closed in the destructor)
  IpcPeers peers_{};
  uint32_t* control_ = nullptr;  // [0]: calls completed, [1]: blocks done in this call
};

}  // namespace tpinfer::cuda
