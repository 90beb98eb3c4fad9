#include "cli/roofline.hpp"

#include <algorithm>
#include <cmath>

namespace tpinfer {

RooflineFloor offline_floor(const std::vector<std::pair<int64_t, int64_t>>& requests,
                            const RooflineModel& m) {
  double tokens = 0, decode_tokens = 0, contexts = 0, decode_contexts = 0, longest = 0;
  for (const auto& [prompt, outputs] : requests) {
    const double p = static_cast<double>(prompt);
    // The first output comes from the prompt's last position; the other d are
    // decode tokens at contexts p + 1 .. p + d.
    const double d = std::max<double>(static_cast<double>(outputs) - 1, 0);
    tokens += p + d;
    decode_tokens += d;
    contexts += p * (p + 1) / 2;
    decode_contexts += d * p + d * (d + 1) / 2;
    longest = std::max<double>(longest, static_cast<double>(outputs));
  }
  contexts += decode_contexts;
  const double steps = std::max(
      {longest, std::ceil(decode_tokens / m.max_batch), std::ceil(tokens / m.max_step_tokens)});
  const double compute_s =
      (m.flops_per_token * tokens + m.flops_per_context * contexts) / m.peak_flops;
  const double memory_s =
      (steps * m.weight_bytes + decode_contexts * m.kv_bytes_per_token) / m.hbm_bytes;
  return {compute_s, memory_s};
}

}  // namespace tpinfer
