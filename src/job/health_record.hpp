#pragma once
// What the health report is made of, without MPI or files: one rank's status
// (as it travels to rank 0 and as it appears in the metrics file), the metrics
// line rank 0 writes every --health-interval, and the rules that name a rank in
// the log (no progress while it has work; uncorrectable ECC errors).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "job/nvml.hpp"

namespace tpinfer::health {

// One engine's prefix-cache counters since the job (this run) started.
struct CacheCounters {
  int64_t cached_tokens = 0;   // prompt tokens taken from the cache
  int64_t evicted_blocks = 0;  // cached blocks given up for new ones
  // Prompt tokens of the sequences admitted (each of n completions counts): the
  // hit rate's denominator.
  int64_t prompt_tokens = 0;
};

struct RankStatus {
  int rank = 0;
  int64_t steps = 0;       // engine steps taken so far
  bool has_work = false;   // requests in its engine
  int64_t rss_bytes = -1;  // host resident set; -1 unknown
  // GPU ranks only (cuda backend); empty bus id: no GPU, and no "gpu" field.
  std::string pci_bus_id;
  std::optional<nvml::GpuReading> gpu;  // empty: NVML absent or the GPU unknown to it
  std::string gpu_error;                // why `gpu` is empty
  // Group leaders only (a TP group's ranks would repeat the same counters).
  std::optional<CacheCounters> prefix_cache;
};

// The status as JSON: the wire form and the per-rank entry of a metrics line
// (keys in a fixed order, for people reading the file).
nlohmann::ordered_json status_to_json(const RankStatus& s);
// Throws Error (exit 1) on a malformed status.
RankStatus status_from_json(const nlohmann::ordered_json& j);

// Rank 0's job counters (from the coordinator), for one metrics line.
struct JobProgress {
  int64_t done = 0, total = 0, errors = 0, generated_tokens = 0;
  double elapsed_s = 0;       // of generation (after the model load)
  int64_t prompt_tokens = 0;  // of the requests done without an error
};

// One metrics line: time (Unix seconds), request and token counters, tokens/s
// over the whole run and since `previous` (the last line's counters), ETA
// (null until a request is done), the prefix cache's prompt tokens, hit rate
// (those / prompt tokens; null before any) and evicted blocks summed over the
// ranks' latest reports, and `ranks` (status_to_json entries with report_age_s
// and stalled added). `final`: the job's last line. The cache counts a request
// when it is admitted and the prompt tokens when it is done, so before the
// final line the rate runs a little ahead.
nlohmann::ordered_json metrics_record(double unix_time, const JobProgress& now,
                                      const JobProgress& previous, nlohmann::ordered_json ranks,
                                      bool final);

// No-progress detection for one rank, fed by its reports as rank 0 receives
// them. A rank stalls when it has work and its step count has not moved for
// stall_after_s(interval): several intervals and at least 30 s, so that one
// slow step (a long prefill on the cpu) does not count.
struct StallWatch {
  int64_t steps = -1;
  bool has_work = false;
  double since = 0;     // rank 0's clock: when its steps last moved (or work arrived)
  bool warned = false;  // this stall was reported already
};
constexpr int kStallIntervals = 6;
constexpr double kMinStallSeconds = 30.0;
double stall_after_s(double interval_s);
void note_report(StallWatch& w, int64_t steps, bool has_work, double now);
bool is_stalled(const StallWatch& w, double now, double after_s);
// True exactly once per stall (again after the rank moved and stalled anew).
bool newly_stalled(StallWatch& w, double now, double after_s);

// The log lines that name a rank ("tpinfer: warning: rank R ...").
std::string stall_warning(int rank, int64_t steps, double seconds);
// A warning when this status reports more uncorrectable ECC errors than
// `*reported` (the count last warned about, updated); nullopt otherwise.
std::optional<std::string> ecc_warning(const RankStatus& s, uint64_t* reported);

}  // namespace tpinfer::health
