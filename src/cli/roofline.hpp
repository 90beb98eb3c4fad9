#pragma once
// The bench's floor for an offline run: a lower bound on its time that no
// schedule can beat on a device with the given ceilings, so that the ratio
// bench prints says how far a run is from what the hardware allows.
#include <cstdint>
#include <utility>
#include <vector>

namespace tpinfer {

// What one rank's forward costs, and the engine's limits.
struct RooflineModel {
  double flops_per_token = 0;     // linear layers: 2 x streamed parameters
  double flops_per_context = 0;   // attention (QK^T and PV) per key a token attends to
  double weight_bytes = 0;        // streamed by every forward step
  double kv_bytes_per_token = 0;  // one token's keys and values, all layers
  double max_batch = 1;           // sequences a step
  double max_step_tokens = 1;     // tokens a step
  double peak_flops = 1;          // per second
  double hbm_bytes = 1;           // per second
};

// The run's FLOPs at the matrix ceiling and its bytes at the HBM ceiling. The
// floor is the larger; their sum bounds a schedule that overlaps none of the
// FLOP-bound work (prompts) with the byte-bound work (decode), which is how
// far from the floor a run of prompt steps and then decode steps must stay.
struct RooflineFloor {
  double compute_s = 0, memory_s = 0;
  double seconds() const { return compute_s > memory_s ? compute_s : memory_s; }
  bool memory_bound() const { return memory_s > compute_s; }  // else FLOPs / peak
};

// Requests as (prompt tokens, output tokens). The larger of the run's FLOPs
// at the matrix ceiling and its bytes at the HBM ceiling. Bytes: every forward
// step streams the weights, and there are at least as many steps as the
// longest request has outputs, the decode tokens need at max_batch a step and
// all tokens need at max_step_tokens a step; each decode token reads the KV of
// its whole context. Prompt tokens' KV reads and recomputation after
// preemption are left out, so it stays a bound.
RooflineFloor offline_floor(const std::vector<std::pair<int64_t, int64_t>>& requests,
                            const RooflineModel& m);

}  // namespace tpinfer
