#include "engine/kv_blocks.hpp"

#include <string>

#include "base/error.hpp"

namespace tpinfer {

KvBlockPool::KvBlockPool(int num_blocks, int block_size) : block_size_(block_size) {
  TPINFER_ASSERT(num_blocks >= 0 && block_size >= 1, "KV cache: bad block count or size");
  const size_t n = static_cast<size_t>(num_blocks);
  refs_.assign(n, 0);
  generation_.assign(n, 0);
  keys_.resize(n);
  cached_.assign(n, 0);
  idle_at_.resize(n, idle_.end());
  free_.reserve(n);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void KvBlockPool::check_id(int32_t block, const char* what) const {
  if (block < 0 || block >= num_blocks())
    throw InternalError(std::string("KV cache: ") + what + " of block " + std::to_string(block) +
                        " out of range [0, " + std::to_string(num_blocks()) + ")");
}

uint64_t KvBlockPool::hash_of(const Key& k) const {
  // FNV-1a over the key's words: only a bucket index (lookups compare keys).
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint32_t w) {
    for (int i = 0; i < 4; ++i) {
      h ^= (w >> (8 * i)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(static_cast<uint32_t>(k.previous));
  mix(k.previous_generation);
  for (int32_t t : k.tokens) mix(static_cast<uint32_t>(t));
  return h;
}

KvBlockPool::Key KvBlockPool::key_of(int32_t previous, std::span<const int32_t> tokens) const {
  TPINFER_ASSERT(static_cast<int>(tokens.size()) == block_size_,
                 "KV cache: a cached block is " + std::to_string(block_size_) + " tokens, not " +
                     std::to_string(tokens.size()));
  Key k;
  k.previous = previous;
  if (previous >= 0) {
    check_id(previous, "key");
    k.previous_generation = generation_[static_cast<size_t>(previous)];
  }
  k.tokens.assign(tokens.begin(), tokens.end());
  return k;
}

void KvBlockPool::forget(int32_t block) {
  const size_t b = static_cast<size_t>(block);
  if (!cached_[b]) return;
  const auto [lo, hi] = by_hash_.equal_range(hash_of(keys_[b]));
  for (auto it = lo; it != hi; ++it)
    if (it->second == block) {
      by_hash_.erase(it);
      break;
    }
  keys_[b] = Key{};
  cached_[b] = 0;
}

int32_t KvBlockPool::allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    TPINFER_ASSERT(!idle_.empty(), "KV cache: allocate() with no free or idle block");
    b = idle_.front();
    idle_.pop_front();
    idle_at_[static_cast<size_t>(b)] = idle_.end();
    forget(b);
    ++evictions_;
  }
  ++generation_[static_cast<size_t>(b)];
  refs_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvBlockPool::release(int32_t block) {
  check_id(block, "release");
  const size_t b = static_cast<size_t>(block);
  if (refs_[b] == 0)
    throw InternalError("KV cache: release of block " + std::to_string(block) +
                        " that nobody holds");
  if (--refs_[b] > 0) return;
  if (cached_[b]) {
    idle_at_[b] = idle_.insert(idle_.end(), block);
  } else {
    free_.push_back(block);
  }
}

int32_t KvBlockPool::acquire_cached(int32_t previous, std::span<const int32_t> tokens) {
  const Key k = key_of(previous, tokens);
  const auto [lo, hi] = by_hash_.equal_range(hash_of(k));
  for (auto it = lo; it != hi; ++it) {
    const size_t b = static_cast<size_t>(it->second);
    if (keys_[b] != k) continue;
    if (refs_[b]++ == 0) {
      idle_.erase(idle_at_[b]);
      idle_at_[b] = idle_.end();
    }
    return it->second;
  }
  return -1;
}

void KvBlockPool::publish(int32_t block, int32_t previous, std::span<const int32_t> tokens) {
  check_id(block, "publish");
  const size_t b = static_cast<size_t>(block);
  TPINFER_ASSERT(refs_[b] > 0, "KV cache: publish of a block nobody holds");
  if (cached_[b]) return;
  Key k = key_of(previous, tokens);
  const uint64_t h = hash_of(k);
  const auto [lo, hi] = by_hash_.equal_range(h);
  for (auto it = lo; it != hi; ++it)
    if (keys_[static_cast<size_t>(it->second)] == k) return;
  keys_[b] = std::move(k);
  cached_[b] = 1;
  by_hash_.emplace(h, block);
}

int KvBlockPool::refs(int32_t block) const {
  check_id(block, "refs");
  return refs_[static_cast<size_t>(block)];
}

bool KvBlockPool::is_cached(int32_t block) const {
  check_id(block, "is_cached");
  return cached_[static_cast<size_t>(block)] != 0;
}

}  // namespace tpinfer
