#pragma once
// The paged KV cache's blocks: reference counts, and the cache of full blocks
// that lets sequences with a common prefix share its K/V (prefix caching, and
// the n completions of one prompt).
//
// A full block is known by its tokens and the block before it (a chain: the
// same tokens after another prefix are other K/V). A lookup compares the
// tokens and the previous block's identity exactly, so a hash collision can
// never hand out the wrong K/V. A block whose last holder lets it go stays
// cached, unreferenced, until a new block is needed and none is free: then the
// least recently released one is evicted.
//
// Every TP rank of a group runs its own pool on the same calls and the model
// indexes its local cache shard by the same block ids, so everything here is a
// pure function of the call sequence: a LIFO free stack initially handing out
// 0, 1, 2, ..., eviction by a release counter, no clocks or pointers.
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace tpinfer {

class KvBlockPool {
 public:
  KvBlockPool(int num_blocks, int block_size);

  // A block of its own for a holder (reference count 1): a free one, else the
  // least recently released cached one (evicted). Throws InternalError when
  // none is free or cached (callers check available()).
  int32_t allocate();
  // One holder lets the block go. Throws InternalError on an id out of range or
  // a block nobody holds.
  void release(int32_t block);

  // The cached full block holding `tokens` (block_size of them) after
  // `previous` (-1: the first block of a sequence), with a reference taken for
  // the caller; -1 when there is none.
  int32_t acquire_cached(int32_t previous, std::span<const int32_t> tokens);
  // `block` now holds the K/V of `tokens` (block_size of them) after
  // `previous`: later lookups may find it. Nothing happens when an equal block
  // is cached already (the first stays the one found).
  void publish(int32_t block, int32_t previous, std::span<const int32_t> tokens);

  int num_blocks() const { return static_cast<int>(refs_.size()); }
  // Blocks allocate() can hand out: free, or cached and held by nobody.
  int available() const { return static_cast<int>(free_.size() + idle_.size()); }
  int refs(int32_t block) const;
  bool is_cached(int32_t block) const;
  int64_t evictions() const { return evictions_; }

 private:
  struct Key {
    int32_t previous = -1;
    uint32_t previous_generation = 0;
    std::vector<int32_t> tokens;
    bool operator==(const Key&) const = default;
  };
  uint64_t hash_of(const Key& k) const;
  Key key_of(int32_t previous, std::span<const int32_t> tokens) const;
  void check_id(int32_t block, const char* what) const;
  void forget(int32_t block);  // drops a cached block's key (before reuse)

  int block_size_;
  std::vector<int32_t> free_;  // never cached or evicted; top of the stack = back
  std::vector<int> refs_;
  // Bumped when a block's contents are replaced, so a key naming it as the
  // previous block no longer matches the new contents.
  std::vector<uint32_t> generation_;
  std::vector<Key> keys_;  // per block: its key while cached
  std::vector<uint8_t> cached_;
  std::unordered_multimap<uint64_t, int32_t> by_hash_;
  std::list<int32_t> idle_;  // cached and unreferenced, least recently released first
  std::vector<std::list<int32_t>::iterator> idle_at_;
  int64_t evictions_ = 0;
};

}  // namespace tpinfer
