#pragma once
// Where a step's GPU time goes, op by op (bench --op-profile): every backend
// op's launches are bracketed by CUDA timing events on the backend's stream,
// and the events of a step are read back when the next step begins, summed by
// kind of step (pure decode, or with prompt tokens) and by op (a linear layer
// by its weight's shape). With it the backend records no CUDA graphs and the
// events end programmatic dependent launch's overlap, so the ops' sum is the
// time of each op alone; the step span minus that sum is the time between them.
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/resources.hpp"
#include "backend/op_profile.hpp"

namespace tpinfer::cuda {

class OpTimer {
 public:
  explicit OpTimer(cudaStream_t stream) : stream_(stream) {}

  // A new step begins (set_batch): the previous step's events are read back.
  void step(bool decode);
  // Brackets one op: `op` with its shape (a linear's in x out features; 0 when
  // none), the matrix FLOPs and the bytes it must move at the least.
  void begin(const char* op, int64_t k, int64_t m, double flops, double bytes);
  void end();
  // What was timed since the last take (pending events read back first).
  OpProfile take();

 private:
  using Key = std::tuple<std::string, int64_t, int64_t>;
  struct Pending {
    Key key;
    size_t start, stop;
    double flops, bytes;
  };
  struct Sum {
    int64_t calls = 0;
    double ms = 0, flops = 0, bytes = 0;
  };
  size_t record();  // an event recorded now on the stream, from the pool
  void resolve();

  cudaStream_t stream_;
  std::vector<Event> pool_;
  size_t used_ = 0;
  std::vector<Pending> pending_;
  bool open_ = false, decode_ = false, stepping_ = false;
  std::map<std::pair<bool, Key>, Sum> sums_;
  int64_t steps_[2] = {0, 0};
  double span_ms_[2] = {0, 0};
};

// Brackets the op of its scope when `timer` is not null.
class OpScope {
 public:
  OpScope(OpTimer* timer, const char* op, int64_t k = 0, int64_t m = 0, double flops = 0,
          double bytes = 0)
      : timer_(timer) {
    if (timer_) timer_->begin(op, k, m, flops, bytes);
  }
  ~OpScope() {
    if (timer_) timer_->end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpTimer* timer_;
};

}  // namespace tpinfer::cuda
