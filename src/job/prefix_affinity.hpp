#pragma once
// The offline scheduler's view of the file: requests read ahead of the groups
// are queued by their prompt's opening tokens, so that requests sharing a
// prefix (a few-shot preamble, a system prompt, earlier turns) go to the same
// DP group and run one after another there, where the prefix cache computes
// the prefix once. No group waits while another has a queue: a group with no
// queue of its own claims a new prefix, and once none is left it takes from
// the longest queue of another.
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "base/request.hpp"

namespace tpinfer {

class PrefixAffinity {
 public:
  // Requests are keyed by their first `key_tokens` prompt tokens (all but the
  // last when shorter).
  explicit PrefixAffinity(int num_groups, int64_t key_tokens = 256);

  void add(Request r);
  // Up to n requests for `group`: its own prefixes' first (oldest prefix
  // first), then unclaimed prefixes in the order they were first read (which
  // it claims), then from the longest queue another group claimed.
  std::vector<Request> take(int group, int64_t n);
  int64_t size() const { return size_; }

 private:
  struct Queue {
    std::deque<Request> requests;
    int owner = -1;
  };
  uint64_t key_of(const Request& r) const;
  void take_from(uint64_t key, int64_t n, std::vector<Request>& out);

  int64_t key_tokens_;
  int64_t size_ = 0;
  int64_t next_arrival_ = 0;
  std::map<int64_t, uint64_t> by_arrival_;  // a queue's first arrival -> its key
  std::map<uint64_t, int64_t> arrival_of_;  // key -> its entry in by_arrival_
  std::map<uint64_t, Queue> queues_;
};

}  // namespace tpinfer
