#pragma once
// The op profile (backend/op_profile.hpp) as bench --op-profile prints it.
#include <string>

#include "backend/op_profile.hpp"

namespace tpinfer {

// Per kind of step that ran: its steps, the span of a step on the device, the
// ops' share of it and the time between ops; then each op's calls and time
// per step, share of the span, achieved TFLOP/s and GB/s, and the fraction of
// its roofline (its FLOPs at peak_tflops or its bytes at hbm_gbs, whichever
// takes longer, over the time it took).
std::string op_profile_report(const OpProfile& p, double hbm_gbs, double peak_tflops);

}  // namespace tpinfer
