#include "dist/mpi_collectives.hpp"

#include <algorithm>
#include <climits>
#include <memory>

#include "dist/mpi_check.hpp"
#include "dist/watchdog.hpp"
#include "dist/world.hpp"

namespace tpinfer {

namespace {

class MpiCollectives final : public HostCollectives {
 public:
  explicit MpiCollectives(MPI_Comm comm) : comm_(duplicate(comm)), size_(comm_.size()) {}

  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t count) override {
    watchdog::Guard guard("all_reduce_sum");
    // MPI counts are int: reduce a huge tensor in pieces.
    constexpr int64_t kChunk = int64_t{1} << 30;
    for (int64_t off = 0; off < count; off += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, count - off));
      TPINFER_MPI_CHECK(
          MPI_Allreduce(MPI_IN_PLACE, data + off, n, MPI_FLOAT, MPI_SUM, comm_.get()));
    }
  }

  // The caller checks count <= INT_MAX (one MPI count), naming its op.
  void all_gather(const float* local, int64_t count, float* out) override {
    watchdog::Guard guard("all_gather");
    TPINFER_MPI_CHECK(MPI_Allgather(local, static_cast<int>(count), MPI_FLOAT, out,
                                    static_cast<int>(count), MPI_FLOAT, comm_.get()));
  }

 private:
  Comm comm_;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<HostCollectives> mpi_collectives(MPI_Comm comm) {
  return std::make_unique<MpiCollectives>(comm);
}

}  // namespace tpinfer
