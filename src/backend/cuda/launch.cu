#include <atomic>

#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {
std::atomic<bool> programmatic{false};
}

void set_programmatic_launch(bool on) {
  programmatic.store(on, std::memory_order_relaxed);
}

bool programmatic_launch() {
  return programmatic.load(std::memory_order_relaxed);
}

}  // namespace tpinfer::cuda
