#pragma once
// Start-up sizing of a device backend's memory arena: free memory x
// --memory-fraction in one allocation. The driver may still refuse that much
// (another process or a rank sharing the GPU allocated after the measurement,
// or fragmentation), so a refused size is retried smaller, down to what the
// model needs at the least. Plain arithmetic, shared by the cuda backend and
// its unit test.
#include <cstddef>
#include <string>
#include <vector>

namespace tpinfer {

struct ArenaAttempt {
  size_t bytes = 0;
  double fraction = 0;  // of the free memory measured
};

constexpr double kArenaShrink = 0.85;  // each retry asks for this share of the last
constexpr int kArenaMaxAttempts = 6;   // tries in all, the first included

// The sizes to try, largest first: free x fraction, then x kArenaShrink each
// time, at most kArenaMaxAttempts, each rounded down to whole `granule`s. The
// first is what the user asked for and is always tried; a retry never goes
// below `floor_bytes` (this rank's weights plus one max-length sequence's KV
// cache: a smaller arena could not run the model). Empty when free x fraction
// is less than one granule.
std::vector<ArenaAttempt> arena_attempts(size_t free_bytes, double fraction, size_t floor_bytes,
                                         size_t granule = size_t{2} << 20);

// "tpinfer: rank R: GPU D: cannot allocate 70.1 GiB (0.900 of 77.9 GiB free); retrying
// with 59.6 GiB (0.765)": the line a retry prints.
std::string arena_retry_line(int rank, int device, const ArenaAttempt& failed,
                             const ArenaAttempt& next, size_t free_bytes);

// The error when every attempt failed (exit 75: the memory was free when
// measured, so another process holds it and a restart may find it again).
std::string arena_failure_message(int device, const std::vector<ArenaAttempt>& tried,
                                  size_t free_bytes, size_t floor_bytes);

}  // namespace tpinfer
