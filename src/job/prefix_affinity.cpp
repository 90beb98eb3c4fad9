#include "job/prefix_affinity.hpp"

#include <algorithm>

#include "base/error.hpp"

namespace tpinfer {

PrefixAffinity::PrefixAffinity(int num_groups, int64_t key_tokens) : key_tokens_(key_tokens) {
  TPINFER_ASSERT(num_groups >= 1 && key_tokens >= 1, "PrefixAffinity: bad sizes");
}

uint64_t PrefixAffinity::key_of(const Request& r) const {
  const int64_t len = static_cast<int64_t>(r.prompt.size());
  const int64_t n = len > key_tokens_ ? key_tokens_ : std::max<int64_t>(1, len - 1);
  uint64_t h = 1469598103934665603ull;  // FNV-1a: grouping only, a collision merely joins queues
  for (int64_t i = 0; i < std::min(n, len); ++i) {
    h ^= static_cast<uint32_t>(r.prompt[static_cast<size_t>(i)]);
    h *= 1099511628211ull;
  }
  return h;
}

void PrefixAffinity::add(Request r) {
  const uint64_t key = key_of(r);
  Queue& q = queues_[key];
  if (q.requests.empty()) {
    by_arrival_[next_arrival_] = key;
    arrival_of_[key] = next_arrival_++;
  }
  q.requests.push_back(std::move(r));
  ++size_;
}

void PrefixAffinity::take_from(uint64_t key, int64_t n, std::vector<Request>& out) {
  Queue& q = queues_.at(key);
  while (n-- > 0 && !q.requests.empty()) {
    out.push_back(std::move(q.requests.front()));
    q.requests.pop_front();
    --size_;
  }
  if (q.requests.empty()) {
    // A prefix read again later starts a new queue, owned by whoever claims it.
    by_arrival_.erase(arrival_of_.at(key));
    arrival_of_.erase(key);
    queues_.erase(key);
  }
}

std::vector<Request> PrefixAffinity::take(int group, int64_t n) {
  std::vector<Request> out;
  auto want = [&] { return n - static_cast<int64_t>(out.size()); };
  // Its own prefixes, then unclaimed ones (claiming them), oldest first.
  for (int pass = 0; pass < 2 && want() > 0; ++pass) {
    std::vector<uint64_t> keys;
    for (const auto& [arrival, key] : by_arrival_) {
      const int owner = queues_.at(key).owner;
      if (pass == 0 ? owner == group : owner < 0) keys.push_back(key);
    }
    for (uint64_t key : keys) {
      if (want() <= 0) break;
      queues_.at(key).owner = group;
      take_from(key, want(), out);
    }
  }
  // Nothing of its own and nothing unclaimed: help the longest queue.
  while (want() > 0 && size_ > 0) {
    uint64_t longest = 0;
    size_t most = 0;
    for (const auto& [arrival, key] : by_arrival_)
      if (queues_.at(key).requests.size() > most) {
        most = queues_.at(key).requests.size();
        longest = key;
      }
    take_from(longest, want(), out);
  }
  return out;
}

}  // namespace tpinfer
