#include "engine/kv_blocks.hpp"

#include <stdexcept>
#include <string>

#include "base/error.hpp"

namespace tpinfer {

KvBlockAllocator::KvBlockAllocator(int num_blocks) {
  if (num_blocks < 0) throw InternalError("KV cache: negative block count");
  allocated_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int32_t KvBlockAllocator::allocate() {
  TPINFER_ASSERT(!free_.empty(), "KV cache: allocate() with no free block");
  const int32_t b = free_.back();
  free_.pop_back();
  allocated_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvBlockAllocator::free(int32_t block) {
  if (block < 0 || block >= num_blocks())
    throw InternalError("KV cache: free() of block " + std::to_string(block) +
                        " out of range [0, " + std::to_string(num_blocks()) + ")");
  if (!allocated_[static_cast<size_t>(block)])
    throw InternalError("KV cache: double free of block " + std::to_string(block));
  allocated_[static_cast<size_t>(block)] = 0;
  free_.push_back(block);
}

bool KvBlockAllocator::is_allocated(int32_t block) const {
  return block >= 0 && block < num_blocks() && allocated_[static_cast<size_t>(block)];
}

}  // namespace tpinfer
