#include "backend/cuda/arena.hpp"

#include <cuda_runtime.h>

#include <new>

namespace tpinfer::cuda {

DeviceArena::DeviceArena(size_t bytes, size_t reserve) {
  void* p = nullptr;
  if (bytes == 0 || cudaMalloc(&p, bytes) != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it
    throw std::bad_alloc();
  }
  mem_ = DeviceMemory(p);
  capacity_ = bytes;
  reserve_ = reserve < bytes ? reserve : bytes;
}

void* DeviceArena::bump(size_t bytes, size_t limit) {
  // Every block starts on a 256-byte boundary: what cuBLASLt and 16-byte
  // vector loads want, and what cudaMalloc itself guarantees.
  const size_t size = (bytes == 0 ? 1 : bytes);
  const size_t rounded = (size + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded < size || rounded > limit || offset_ > limit - rounded) throw std::bad_alloc();
  void* p = static_cast<char*>(mem_.get()) + offset_;
  offset_ += rounded;
  return p;
}

void* DeviceArena::allocate(size_t bytes) {
  return bump(bytes, capacity_ - reserve_);
}

void* DeviceArena::allocate_internal(size_t bytes) {
  return bump(bytes, capacity_);
}

}  // namespace tpinfer::cuda
