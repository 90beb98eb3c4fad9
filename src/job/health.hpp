#pragma once
// The job's health report. Every rank sends rank 0 a small status (steps, host
// memory, and its GPU's NVML reading) every --health-interval seconds, on a
// communicator of its own with non-blocking sends that rank 0 collects between
// its steps, so the report never stalls the step loop. Rank 0 appends one JSON
// line per interval to --metrics FILE (when given) and names in the log a rank
// that stops making progress with work in hand, or whose GPU reports
// uncorrectable ECC errors.
//
// All MPI calls are made by the main thread (MPI_THREAD_FUNNELED).
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dist/world.hpp"
#include "job/health_record.hpp"
#include "job/nvml.hpp"

namespace tpinfer::health {

struct Options {
  std::string metrics_path;  // empty: no metrics file (the log warnings stay)
  double interval_s = 5.0;
  std::function<JobProgress()> progress;  // rank 0: the coordinator's counters
};

class Monitor {
 public:
  // Collective over w.world (whose communicator it duplicates). Rank 0 opens
  // the metrics file for appending: InputError when it cannot.
  Monitor(const World& w, Options options);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // The GPU this rank computes on (cudaDeviceGetPCIBusId's form); loads NVML.
  // Not called (or empty) on the cpu backend: no GPU fields.
  void attach_gpu(const std::string& pci_bus_id);

  // Group leaders: reads its engine's prefix-cache counters for each status
  // (the engine is made after the monitor, and must outlive its last tick).
  void attach_prefix_cache(std::function<CacheCounters()> counters);

  // Between steps, on every rank; returns at once unless a report is due (an
  // interval has passed, or work arrived or ran out) or (rank 0) statuses
  // have arrived.
  void tick(int64_t steps, bool has_work);

  // Collective at the end of the job: every rank's last status reaches rank 0,
  // which writes the final line.
  void finish(int64_t steps);

 private:
  RankStatus sample(int64_t steps, bool has_work, bool read_gpu);
  void send(const RankStatus& s);
  void poll_sends();
  void collect();                            // rank 0
  void record(RankStatus s, double now);     // rank 0
  void report(double now, bool final);       // rank 0
  void write_line(const std::string& line);  // rank 0

  struct Send {
    std::unique_ptr<char[]> payload;  // must outlive the MPI_Isend
    MPI_Request request = MPI_REQUEST_NULL;
  };

  Comm comm_;
  int rank_ = 0, size_ = 1;
  Options opt_;
  int metrics_fd_ = -1;
  std::unique_ptr<nvml::Library> nvml_;
  std::string bus_id_;
  std::function<CacheCounters()> cache_counters_;
  std::optional<nvml::GpuReading> gpu_;  // the last reading
  std::string gpu_error_;
  double last_sample_ = -1e300;  // MPI_Wtime; the first tick reports at once
  bool last_has_work_ = false;
  int64_t sent_ = 0;
  std::list<Send> sends_;
  // Rank 0's view of every rank.
  std::vector<std::optional<RankStatus>> latest_;
  std::vector<double> heard_at_;
  std::vector<StallWatch> stall_;
  std::vector<uint64_t> ecc_reported_;
  std::vector<int64_t> received_;
  JobProgress previous_;
};

}  // namespace tpinfer::health
