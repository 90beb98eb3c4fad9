#include "cli/op_profile_report.hpp"

#include <algorithm>
#include <cstdio>

namespace tpinfer {

std::string op_profile_report(const OpProfile& p, double hbm_gbs, double peak_tflops) {
  std::string out;
  char line[256];
  const char* names[2] = {"steps with prompt tokens", "pure decode steps"};
  for (int kind = 0; kind < 2; ++kind) {
    const OpProfile::Kind& k = p.kinds[kind];
    if (k.steps == 0) continue;
    const double steps = static_cast<double>(k.steps);
    double in_ops = 0;
    for (const OpTime& t : k.ops) in_ops += t.ms;
    std::snprintf(line, sizeof line,
                  "  device time by op, %s: %lld steps, %.3f ms a step from first op to last, "
                  "%.3f in ops, %.3f between them\n",
                  names[kind], static_cast<long long>(k.steps), k.span_ms / steps, in_ops / steps,
                  (k.span_ms - in_ops) / steps);
    out += line;
    std::snprintf(line, sizeof line, "    %-26s %10s %9s %7s %8s %8s %9s\n", "op", "calls/step",
                  "ms/step", "share", "TFLOP/s", "GB/s", "roofline");
    out += line;
    for (const OpTime& t : k.ops) {
      const std::string name =
          t.k > 0 ? t.op + " " + std::to_string(t.k) + "x" + std::to_string(t.m) : t.op;
      const double s = t.ms / 1e3;
      const double floor_s = std::max(t.flops / (peak_tflops * 1e12), t.bytes / (hbm_gbs * 1e9));
      std::snprintf(line, sizeof line, "    %-26s %10.1f %9.3f %6.1f%% %8.1f %8.1f %9.2f\n",
                    name.c_str(), static_cast<double>(t.calls) / steps, t.ms / steps,
                    k.span_ms > 0 ? 100.0 * t.ms / k.span_ms : 0.0,
                    s > 0 ? t.flops / s / 1e12 : 0.0, s > 0 ? t.bytes / s / 1e9 : 0.0,
                    s > 0 ? floor_s / s : 0.0);
      out += line;
    }
  }
  return out;
}

}  // namespace tpinfer
