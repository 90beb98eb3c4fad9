#include "backend/memory_retry.hpp"

#include <cstdio>

namespace tpinfer {

namespace {

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

}  // namespace

std::vector<ArenaAttempt> arena_attempts(size_t free_bytes, double fraction, size_t floor_bytes,
                                         size_t granule) {
  std::vector<ArenaAttempt> out;
  if (granule == 0 || !(fraction > 0)) return out;
  double share = fraction;
  for (int i = 0; i < kArenaMaxAttempts; ++i, share *= kArenaShrink) {
    const auto want = static_cast<size_t>(static_cast<double>(free_bytes) * share);
    const size_t bytes = want / granule * granule;
    if (bytes == 0) break;
    if (i > 0 && bytes < floor_bytes) break;
    if (!out.empty() && bytes == out.back().bytes) continue;  // tiny sizes round alike
    out.push_back({bytes, static_cast<double>(bytes) / static_cast<double>(free_bytes)});
  }
  return out;
}

std::string arena_retry_line(int rank, int device, const ArenaAttempt& failed,
                             const ArenaAttempt& next, size_t free_bytes) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "tpinfer: rank %d: GPU %d: cannot allocate %s (%.3f of %s free); retrying with %s "
                "(%.3f)",
                rank, device, gib(failed.bytes).c_str(), failed.fraction, gib(free_bytes).c_str(),
                gib(next.bytes).c_str(), next.fraction);
  return buf;
}

std::string arena_failure_message(int device, const std::vector<ArenaAttempt>& tried,
                                  size_t free_bytes, size_t floor_bytes) {
  std::string sizes;
  for (const auto& a : tried) sizes += (sizes.empty() ? "" : ", ") + gib(a.bytes);
  if (sizes.empty()) sizes = "nothing";
  return "GPU " + std::to_string(device) + ": cannot allocate the memory arena: tried " + sizes +
         " of " + gib(free_bytes) + " reported free; the model needs at least " + gib(floor_bytes) +
         " (weights and one max-length sequence). Another process is probably using the GPU; "
         "free it, or lower --memory-fraction, or use more --tp ranks";
}

}  // namespace tpinfer
