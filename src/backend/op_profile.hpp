#pragma once
// Where a step's device time went, op by op: what the cuda backend measures
// with op_profile on (src/backend/cuda/op_timer.hpp), and bench prints
// (cli/op_profile_report.hpp). Plain data, so that the report is tested on any build.
#include <cstdint>
#include <string>
#include <vector>

namespace tpinfer {

struct OpTime {
  std::string op;
  int64_t k = 0, m = 0;  // a linear layer's in and out features; else 0
  int64_t calls = 0;
  double ms = 0;     // summed over the calls
  double flops = 0;  // matrix FLOPs the calls did
  double bytes = 0;  // bytes they had to move at the least
};

// Per kind of step, [0] with prompt tokens and [1] pure decode: the steps,
// their summed span (first op's start to last op's end) and each op's sums,
// most time first.
struct OpProfile {
  struct Kind {
    int64_t steps = 0;
    double span_ms = 0;
    std::vector<OpTime> ops;
  } kinds[2];
};

}  // namespace tpinfer
