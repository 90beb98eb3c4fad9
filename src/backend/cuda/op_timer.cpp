#include "backend/cuda/op_timer.hpp"

#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "base/error.hpp"

namespace tpinfer::cuda {

size_t OpTimer::record() {
  if (used_ == pool_.size()) pool_.push_back(make_timing_event());
  TPINFER_CUDA_CHECK(cudaEventRecord(pool_[used_].get(), stream_));
  return used_++;
}

void OpTimer::begin(const char* op, int64_t k, int64_t m, double flops, double bytes) {
  if (!stepping_) return;  // loading, before the first step: not a step's time
  TPINFER_ASSERT(!open_, std::string("op timer: ") + op + " began inside another op");
  open_ = true;
  pending_.push_back({{op, k, m}, record(), 0, flops, bytes});
}

void OpTimer::end() {
  if (!open_) return;
  open_ = false;
  pending_.back().stop = record();
}

void OpTimer::resolve() {
  if (pending_.empty()) return;
  TPINFER_CUDA_CHECK(cudaEventSynchronize(pool_[pending_.back().stop].get()));
  const int kind = decode_ ? 1 : 0;
  for (const Pending& p : pending_) {
    float ms = 0;
    TPINFER_CUDA_CHECK(cudaEventElapsedTime(&ms, pool_[p.start].get(), pool_[p.stop].get()));
    Sum& s = sums_[{decode_, p.key}];
    ++s.calls;
    s.ms += ms;
    s.flops += p.flops;
    s.bytes += p.bytes;
  }
  float span = 0;
  TPINFER_CUDA_CHECK(cudaEventElapsedTime(&span, pool_[pending_.front().start].get(),
                                          pool_[pending_.back().stop].get()));
  span_ms_[kind] += span;
  ++steps_[kind];
  pending_.clear();
  used_ = 0;
}

void OpTimer::step(bool decode) {
  TPINFER_ASSERT(!open_, "op timer: a step began inside an op");
  resolve();
  decode_ = decode;
  stepping_ = true;
}

OpProfile OpTimer::take() {
  resolve();
  OpProfile out;
  for (int kind = 0; kind < 2; ++kind) {
    out.kinds[kind].steps = steps_[kind];
    out.kinds[kind].span_ms = span_ms_[kind];
  }
  for (const auto& [key, s] : sums_) {
    const auto& [op, k, m] = key.second;
    out.kinds[key.first ? 1 : 0].ops.push_back({op, k, m, s.calls, s.ms, s.flops, s.bytes});
  }
  for (auto& kind : out.kinds)
    std::sort(kind.ops.begin(), kind.ops.end(),
              [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  sums_.clear();
  steps_[0] = steps_[1] = 0;
  span_ms_[0] = span_ms_[1] = 0;
  return out;
}

}  // namespace tpinfer::cuda
