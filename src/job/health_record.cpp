#include "job/health_record.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/error.hpp"

namespace tpinfer::health {

namespace {

using json = nlohmann::ordered_json;

template <typename T>
void put(json& j, const char* key, const std::optional<T>& v) {
  j[key] = v ? json(*v) : json(nullptr);
}

template <typename T>
std::optional<T> get(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<T>();
}

json gpu_to_json(const RankStatus& s) {
  json g = {{"pci_bus_id", s.pci_bus_id}};
  if (!s.gpu) {
    g["error"] = s.gpu_error;
    return g;
  }
  const nvml::GpuReading& r = *s.gpu;
  put(g, "memory_used_bytes", r.memory_used_bytes);
  put(g, "memory_total_bytes", r.memory_total_bytes);
  put(g, "utilization_gpu_pct", r.utilization_gpu_pct);
  put(g, "utilization_memory_pct", r.utilization_memory_pct);
  put(g, "temperature_c", r.temperature_c);
  put(g, "sm_clock_mhz", r.sm_clock_mhz);
  put(g, "memory_clock_mhz", r.memory_clock_mhz);
  put(g, "throttle_mask", r.throttle_reasons);
  g["throttle_reasons"] =
      r.throttle_reasons ? json(nvml::throttle_reason_names(*r.throttle_reasons)) : json(nullptr);
  put(g, "ecc_uncorrectable", r.ecc_uncorrectable);
  return g;
}

}  // namespace

json status_to_json(const RankStatus& s) {
  json j = {{"rank", s.rank}, {"steps", s.steps}, {"has_work", s.has_work}};
  j["rss_bytes"] = s.rss_bytes >= 0 ? json(s.rss_bytes) : json(nullptr);
  if (!s.pci_bus_id.empty()) j["gpu"] = gpu_to_json(s);
  if (s.prefix_cache)
    j["prefix_cache"] = {{"cached_tokens", s.prefix_cache->cached_tokens},
                         {"evicted_blocks", s.prefix_cache->evicted_blocks},
                         {"prompt_tokens", s.prefix_cache->prompt_tokens}};
  return j;
}

RankStatus status_from_json(const json& j) {
  try {
    RankStatus s;
    s.rank = j.at("rank").get<int>();
    s.steps = j.at("steps").get<int64_t>();
    s.has_work = j.at("has_work").get<bool>();
    s.rss_bytes = get<int64_t>(j, "rss_bytes").value_or(-1);
    if (j.contains("gpu")) {
      const json& g = j["gpu"];
      s.pci_bus_id = g.at("pci_bus_id").get<std::string>();
      if (g.contains("error")) {
        s.gpu_error = g["error"].get<std::string>();
      } else {
        nvml::GpuReading r;
        r.memory_used_bytes = get<uint64_t>(g, "memory_used_bytes");
        r.memory_total_bytes = get<uint64_t>(g, "memory_total_bytes");
        r.utilization_gpu_pct = get<uint32_t>(g, "utilization_gpu_pct");
        r.utilization_memory_pct = get<uint32_t>(g, "utilization_memory_pct");
        r.temperature_c = get<uint32_t>(g, "temperature_c");
        r.sm_clock_mhz = get<uint32_t>(g, "sm_clock_mhz");
        r.memory_clock_mhz = get<uint32_t>(g, "memory_clock_mhz");
        r.throttle_reasons = get<uint64_t>(g, "throttle_mask");
        r.ecc_uncorrectable = get<uint64_t>(g, "ecc_uncorrectable");
        s.gpu = r;
      }
    }
    if (j.contains("prefix_cache")) {
      const json& c = j["prefix_cache"];
      s.prefix_cache =
          CacheCounters{c.at("cached_tokens").get<int64_t>(), c.at("evicted_blocks").get<int64_t>(),
                        c.at("prompt_tokens").get<int64_t>()};
    }
    return s;
  } catch (const json::exception& e) {
    throw InternalError(std::string("malformed health status on the wire: ") + e.what());
  }
}

json metrics_record(double unix_time, const JobProgress& now, const JobProgress& previous,
                    json ranks, bool final) {
  const double rate = now.elapsed_s > 0 ? now.generated_tokens / now.elapsed_s : 0.0;
  const double dt = now.elapsed_s - previous.elapsed_s;
  const double recent = dt > 0 ? (now.generated_tokens - previous.generated_tokens) / dt : rate;
  json eta = nullptr;
  const int64_t left = std::max<int64_t>(0, now.total - now.done);
  if (left == 0)
    eta = 0.0;
  else if (now.done > 0 && now.elapsed_s > 0)
    eta = left / (now.done / now.elapsed_s);
  // Whole milliseconds and tenths of a token/s: the file is read by people too.
  auto round_to = [](double v, double scale) { return std::round(v * scale) / scale; };
  int64_t cached = 0, evicted = 0, admitted = 0;
  for (const json& r : ranks)
    if (r.contains("prefix_cache")) {
      cached += r["prefix_cache"].at("cached_tokens").get<int64_t>();
      evicted += r["prefix_cache"].at("evicted_blocks").get<int64_t>();
      admitted += r["prefix_cache"].at("prompt_tokens").get<int64_t>();
    }
  // Over the sequences' prompts (each of n completions has one), so <= 1.
  const json hit_rate =
      admitted > 0 ? json(round_to(static_cast<double>(cached) / admitted, 1e4)) : json(nullptr);
  json j = {{"time", round_to(unix_time, 1e3)},
            {"elapsed_s", round_to(now.elapsed_s, 1e3)},
            {"requests_done", now.done},
            {"requests_total", now.total},
            {"errors", now.errors},
            {"generated_tokens", now.generated_tokens},
            {"prompt_tokens", now.prompt_tokens},
            {"prefix_cache_tokens", cached},
            {"prefix_cache_hit_rate", hit_rate},
            {"evicted_blocks", evicted},
            {"tokens_per_s", round_to(rate, 10)},
            {"recent_tokens_per_s", round_to(recent, 10)},
            // Up to whole milliseconds: work left never reads as an ETA of 0.
            {"eta_s", eta.is_null() ? eta : json(std::ceil(eta.get<double>() * 1e3) / 1e3)},
            {"final", final},
            {"ranks", std::move(ranks)}};
  return j;
}

double stall_after_s(double interval_s) {
  return std::max(kStallIntervals * interval_s, kMinStallSeconds);
}

void note_report(StallWatch& w, int64_t steps, bool has_work, double now) {
  // The clock restarts when the rank moves, and when work arrives after a
  // spell without (waiting for work is not a stall).
  if (steps != w.steps || (has_work && !w.has_work)) {
    w.steps = steps;
    w.since = now;
    w.warned = false;
  }
  w.has_work = has_work;
}

bool is_stalled(const StallWatch& w, double now, double after_s) {
  return w.steps >= 0 && w.has_work && now - w.since >= after_s;
}

bool newly_stalled(StallWatch& w, double now, double after_s) {
  if (w.warned || !is_stalled(w, now, after_s)) return false;
  w.warned = true;
  return true;
}

std::string stall_warning(int rank, int64_t steps, double seconds) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "tpinfer: warning: rank %d has made no progress for %.0f s (still at step %lld "
                "with requests in hand): stuck or very slow",
                rank, seconds, static_cast<long long>(steps));
  return buf;
}

std::optional<std::string> ecc_warning(const RankStatus& s, uint64_t* reported) {
  if (!s.gpu || !s.gpu->ecc_uncorrectable) return std::nullopt;
  const uint64_t n = *s.gpu->ecc_uncorrectable;
  if (n == 0 || n <= *reported) return std::nullopt;
  *reported = n;
  return "tpinfer: warning: rank " + std::to_string(s.rank) + ": GPU " + s.pci_bus_id +
         " reports " + std::to_string(n) +
         " uncorrectable ECC error(s) since the driver loaded: its results may be wrong; restart "
         "without this GPU";
}

}  // namespace tpinfer::health
