#pragma once
// A TP group's collectives on host memory, as the cpu backend needs them. dist
// implements them over MPI (dist/mpi_collectives.hpp) and hands them in, so
// the backend layer knows no MPI (but for the cuda backend's own NCCL and IPC
// set-up in src/backend/cuda).
#include <cstdint>
#include <memory>

namespace tpinfer {

class HostCollectives {
 public:
  virtual ~HostCollectives() = default;
  virtual int size() const = 0;  // ranks in the group
  // data[0, count) = its sum over the group's ranks, on every rank.
  virtual void all_reduce_sum(float* data, int64_t count) = 0;
  // out[r * count, (r + 1) * count) = rank r's local[0, count), on every rank.
  virtual void all_gather(const float* local, int64_t count, float* out) = 0;
};

// A group of one process: the sum is the data, the gather a copy (tests, and
// a backend with no TP peers, need no MPI).
std::unique_ptr<HostCollectives> single_process_collectives();

}  // namespace tpinfer
