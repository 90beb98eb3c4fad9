#pragma once
// The device memory of one backend: a single cudaMalloc at construction, handed
// out by bump allocation. Nothing is ever freed before the backend goes, so a
// step never allocates and the KV cache can be sized once from the free memory
// (Backend::memory_info()).
//
// The last `reserve` bytes are kept for the backend's own per-step scratch
// (batch metadata, split-decode partials), which grows on first use with the
// batch: a KV cache sized from the free memory then cannot starve it.
#include <cstddef>
#include <cstdint>

#include "backend/cuda/resources.hpp"

namespace tpinfer::cuda {

class DeviceArena {
 public:
  static constexpr size_t kAlignment = 256;

  // Takes `bytes` of device memory (throws std::bad_alloc when cudaMalloc fails).
  DeviceArena(size_t bytes, size_t reserve);

  // Tensor memory: throws std::bad_alloc when it would reach into the reserve.
  void* allocate(size_t bytes);
  // Backend scratch: may use the reserve; throws std::bad_alloc past the end.
  void* allocate_internal(size_t bytes);

  size_t capacity() const { return capacity_; }
  size_t used() const { return offset_; }
  // Bytes allocate_internal() can still hand out.
  size_t internal_available() const { return capacity_ - offset_; }
  // Bytes allocate() can still hand out.
  size_t available() const {
    return offset_ + reserve_ >= capacity_ ? 0 : capacity_ - reserve_ - offset_;
  }

 private:
  void* bump(size_t bytes, size_t limit);

  DeviceMemory mem_;
  size_t capacity_ = 0;
  size_t reserve_ = 0;
  size_t offset_ = 0;
};

}  // namespace tpinfer::cuda
