#pragma once
// Free list of paged KV-cache blocks. Every TP rank of a group runs its own
// allocator on the same calls and the model indexes its local cache shard by
// the same block ids, so the ids handed out must be a pure function of the
// call sequence: a LIFO stack, initially handing out 0, 1, 2, ...
#include <cstdint>
#include <vector>

namespace tpinfer {

class KvBlockAllocator {
 public:
  explicit KvBlockAllocator(int num_blocks);

  // Throws InternalError when no block is free (callers check free_count()).
  int32_t allocate();
  // Throws InternalError on an id out of range or a block that is not allocated.
  void free(int32_t block);

  int num_blocks() const { return static_cast<int>(allocated_.size()); }
  int free_count() const { return static_cast<int>(free_.size()); }
  bool is_allocated(int32_t block) const;

 private:
  std::vector<int32_t> free_;       // top of the stack = back
  std::vector<uint8_t> allocated_;  // per block, to catch double frees
};

}  // namespace tpinfer
