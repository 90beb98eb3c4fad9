#include "job/health.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "base/error.hpp"
#include "dist/mpi_check.hpp"
#include "dist/mpi_messages.hpp"
#include "dist/watchdog.hpp"

namespace tpinfer::health {

namespace {

constexpr int kTagStatus = 1;  // on the monitor's own communicator

// Resident host memory of this process, from /proc (Linux); -1 elsewhere.
int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long long pages_total = 0, pages_resident = -1;
  if (!(statm >> pages_total >> pages_resident) || pages_resident < 0) return -1;
  return pages_resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

RankStatus parse_status(const std::string& payload) {
  const auto j = nlohmann::ordered_json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw InternalError("malformed health status on the wire");
  return status_from_json(j);
}

}  // namespace

Monitor::Monitor(const World& w, Options options) : opt_(std::move(options)) {
  comm_ = duplicate(w.world.get());
  rank_ = w.rank;
  size_ = w.size;
  if (rank_ != 0) return;
  const auto n = static_cast<size_t>(size_);
  latest_.resize(n);
  heard_at_.assign(n, 0.0);
  stall_.resize(n);
  ecc_reported_.assign(n, 0);
  received_.assign(n, 0);
  if (!opt_.metrics_path.empty()) {
    metrics_fd_ =
        ::open(opt_.metrics_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (metrics_fd_ < 0)
      throw InputError("cannot open metrics file " + opt_.metrics_path + ": " +
                       std::strerror(errno));
  }
}

Monitor::~Monitor() {
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
  // Left only when the job ends on an error: MPI may still read these
  // buffers, so they are let go rather than freed under it.
  int finalized = 0;
  MPI_Finalized(&finalized);
  for (auto& s : sends_) {
    int done = 0;
    if (!finalized && MPI_Test(&s.request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done)
      continue;
    if (!finalized) MPI_Request_free(&s.request);
    (void)s.payload.release();
  }
}

void Monitor::attach_gpu(const std::string& pci_bus_id) {
  bus_id_ = pci_bus_id;
  if (!bus_id_.empty()) nvml_ = std::make_unique<nvml::Library>();
}

void Monitor::attach_prefix_cache(std::function<CacheCounters()> counters) {
  cache_counters_ = std::move(counters);
}

RankStatus Monitor::sample(int64_t steps, bool has_work, bool read_gpu) {
  RankStatus s;
  s.rank = rank_;
  s.steps = steps;
  s.has_work = has_work;
  s.rss_bytes = resident_bytes();
  s.pci_bus_id = bus_id_;
  if (nvml_ && read_gpu) {
    gpu_ = nvml_->read(bus_id_);
    gpu_error_ = gpu_                 ? ""
                 : nvml_->available() ? "NVML does not know PCI bus id " + bus_id_
                                      : nvml_->why_absent();
  }
  s.gpu = gpu_;
  s.gpu_error = gpu_error_;
  if (cache_counters_) s.prefix_cache = cache_counters_();
  return s;
}

void Monitor::send(const RankStatus& s) {
  const std::string text = status_to_json(s).dump();
  Send& out = sends_.emplace_back();
  out.payload = std::make_unique<char[]>(text.size());
  std::memcpy(out.payload.get(), text.data(), text.size());
  TPINFER_MPI_CHECK(MPI_Isend(out.payload.get(), static_cast<int>(text.size()), MPI_CHAR, 0,
                              kTagStatus, comm_.get(), &out.request));
  ++sent_;
}

void Monitor::poll_sends() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    TPINFER_MPI_CHECK(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE));
    it = done ? sends_.erase(it) : std::next(it);
  }
}

void Monitor::tick(int64_t steps, bool has_work) {
  const double now = MPI_Wtime();
  if (rank_ == 0) collect();
  // A status goes out every interval, and also at once when work arrives or
  // runs out: a rank that stops right after taking work must not look idle to
  // rank 0 until its next report. Metrics lines stay one per interval.
  const bool due = now - last_sample_ >= opt_.interval_s;
  if (!due && has_work == last_has_work_) return;
  last_has_work_ = has_work;
  if (due) last_sample_ = now;
  // NVML is read once per interval; a report between reuses that reading.
  if (rank_ == 0) {
    record(sample(steps, has_work, due), now);
    if (due) report(now, false);
  } else {
    poll_sends();
    send(sample(steps, has_work, due));
  }
}

void Monitor::collect() {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    TPINFER_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kTagStatus, comm_.get(), &flag, &st));
    if (!flag) return;
    const int from = st.MPI_SOURCE;
    RankStatus s = parse_status(receive_string(comm_.get(), st));
    ++received_[static_cast<size_t>(from)];
    s.rank = from;  // the sender is who it says, whatever the payload claims
    record(std::move(s), MPI_Wtime());
  }
}

void Monitor::record(RankStatus s, double now) {
  const auto r = static_cast<size_t>(s.rank);
  note_report(stall_[r], s.steps, s.has_work, now);
  heard_at_[r] = now;
  if (auto warning = ecc_warning(s, &ecc_reported_[r])) {
    std::fprintf(stderr, "%s\n", warning->c_str());
    std::fflush(stderr);
  }
  latest_[r] = std::move(s);
}

void Monitor::report(double now, bool final) {
  const double after = stall_after_s(opt_.interval_s);
  nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
  for (int r = 0; r < size_; ++r) {
    const auto i = static_cast<size_t>(r);
    StallWatch& w = stall_[i];
    if (!final && newly_stalled(w, now, after)) {
      std::fprintf(stderr, "%s\n", stall_warning(r, w.steps, now - w.since).c_str());
      std::fflush(stderr);
    }
    if (!latest_[i]) {
      ranks.push_back({{"rank", r}, {"report_age_s", nullptr}});
      continue;
    }
    nlohmann::ordered_json j = status_to_json(*latest_[i]);
    j["report_age_s"] = std::round(std::max(0.0, now - heard_at_[i]) * 1000) / 1000;
    j["stalled"] = !final && is_stalled(w, now, after);
    ranks.push_back(std::move(j));
  }
  const JobProgress progress = opt_.progress ? opt_.progress() : JobProgress{};
  if (metrics_fd_ >= 0)
    write_line(metrics_record(unix_now(), progress, previous_, std::move(ranks), final).dump() +
               "\n");
  previous_ = progress;
}

void Monitor::write_line(const std::string& line) {
  // One write per line, O_APPEND: a reader never sees half a line unless the
  // disk fills; then the metrics stop (the job itself goes on).
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(metrics_fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "tpinfer: warning: cannot write metrics file %s: %s; no more metrics\n",
                   opt_.metrics_path.c_str(), n < 0 ? std::strerror(errno) : "nothing written");
      std::fflush(stderr);
      ::close(metrics_fd_);
      metrics_fd_ = -1;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void Monitor::finish(int64_t steps) {
  watchdog::Guard guard("health_finish");
  const std::string mine = status_to_json(sample(steps, false, true)).dump();
  // How many statuses each rank sent, and its last one.
  long long counts[2] = {sent_, static_cast<long long>(mine.size())};
  std::vector<long long> all(rank_ == 0 ? 2 * static_cast<size_t>(size_) : 0);
  TPINFER_MPI_CHECK(
      MPI_Gather(counts, 2, MPI_LONG_LONG, all.data(), 2, MPI_LONG_LONG, 0, comm_.get()));
  std::vector<int> sizes, offsets;
  std::string finals;
  if (rank_ == 0) {
    for (int r = 0; r < size_; ++r) {
      offsets.push_back(static_cast<int>(finals.size()));
      sizes.push_back(static_cast<int>(all[2 * static_cast<size_t>(r) + 1]));
      finals.resize(finals.size() + static_cast<size_t>(sizes.back()));
    }
  }
  TPINFER_MPI_CHECK(MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, finals.data(),
                                sizes.data(), offsets.data(), MPI_CHAR, 0, comm_.get()));
  if (rank_ != 0) {
    // Rank 0 takes every status still on its way (below), so these complete.
    for (auto& s : sends_) TPINFER_MPI_CHECK(MPI_Wait(&s.request, MPI_STATUS_IGNORE));
    sends_.clear();
    return;
  }
  for (int r = 1; r < size_; ++r) {
    const auto i = static_cast<size_t>(r);
    while (received_[i] < all[2 * i]) {
      MPI_Status st;
      TPINFER_MPI_CHECK(MPI_Probe(r, kTagStatus, comm_.get(), &st));
      RankStatus s = parse_status(receive_string(comm_.get(), st));
      ++received_[i];
      s.rank = r;
      record(std::move(s), MPI_Wtime());
    }
  }
  const double now = MPI_Wtime();
  for (int r = 0; r < size_; ++r) {
    RankStatus s = parse_status(finals.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                                              static_cast<size_t>(sizes[static_cast<size_t>(r)])));
    s.rank = r;
    record(std::move(s), now);
  }
  report(now, true);
}

}  // namespace tpinfer::health
