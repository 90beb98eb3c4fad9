#include "engine/scheduler.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

#include "base/error.hpp"

namespace tpinfer {

Scheduler::Scheduler(SchedulerConfig config) : config_(config), alloc_(config.num_blocks) {
  if (config_.block_size < 1 || config_.num_blocks < 1 || config_.max_running < 1 ||
      config_.max_step_tokens < 1)
    throw UsageError(
        "scheduler: block_size, num_blocks, max_running and max_step_tokens must "
        "all be >= 1");
  // Every running sequence whose prefill is done decodes one token each step,
  // before any prefill, so more running sequences than budgeted tokens could
  // not all be served.
  max_running_ = std::min(config_.max_running, config_.max_step_tokens);
  watermark_ = config_.num_blocks / 100;
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  return (tokens + config_.block_size - 1) / config_.block_size;
}

int64_t Scheduler::add(Sequence seq) {
  const int64_t n = static_cast<int64_t>(seq.tokens.size());
  if (n == 0 || seq.max_len <= n || seq.num_computed != 0 || !seq.blocks.empty())
    throw InternalError("scheduler: add() needs a fresh sequence with tokens to generate");
  // The last token is sampled but never run through the model, so the most K/V
  // a sequence ever holds is max_len - 1 positions (also after a preemption,
  // which recomputes only tokens it already has).
  const int64_t need = blocks_for(seq.max_len - 1);
  if (need > config_.num_blocks)
    throw InputError("request " + seq.request.id_json + " (line " +
                     std::to_string(seq.request.line) + "): prompt (" + std::to_string(n) +
                     " tokens) + max_new_tokens needs up to " + std::to_string(seq.max_len - 1) +
                     " cached tokens, more than the whole KV cache (" +
                     std::to_string(config_.num_blocks) + " blocks x " +
                     std::to_string(config_.block_size) + " tokens)");
  seq.id = next_id_++;
  const int64_t id = seq.id;
  waiting_.push_back(id);
  seqs_.emplace(id, std::move(seq));
  return id;
}

void Scheduler::allocate_to(Sequence& s, int64_t n_blocks) {
  while (static_cast<int64_t>(s.blocks.size()) < n_blocks) s.blocks.push_back(alloc_.allocate());
}

void Scheduler::preempt_newest() {
  const int64_t victim = running_.back();
  running_.pop_back();
  Sequence& s = seqs_.at(victim);
  // Freed in reverse so the LIFO free list hands them out again in their old order.
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) alloc_.free(*it);
  s.blocks.clear();
  s.num_computed = 0;
  // Preempted sequences go first, oldest in front: they have waited longest.
  waiting_.push_front(victim);
}

StepSchedule Scheduler::schedule() {
  StepSchedule step;
  int64_t budget = config_.max_step_tokens;
  auto add_chunk = [&](const Sequence& s, int64_t count) {
    const bool samples = s.num_computed + count == static_cast<int64_t>(s.tokens.size());
    step.chunks.push_back({s.id, s.num_computed, count, samples});
    step.num_tokens += count;
    budget -= count;
  };

  // 1. Decodes: running sequences with exactly one token left to compute, oldest
  //    first. Only these can need a new block; when none is free, the newest
  //    running sequence gives its blocks up (possibly the one asking).
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& s = seqs_.at(running_[i]);
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    if (s.num_computed + 1 != n) continue;
    const int64_t need = blocks_for(n) - static_cast<int64_t>(s.blocks.size());
    bool preempted_self = false;
    while (need > alloc_.free_count()) {
      preempted_self = running_.back() == s.id;
      preempt_newest();
      ++step.preempted;
      if (preempted_self) break;
    }
    if (preempted_self) break;  // it was the last running sequence
    allocate_to(s, blocks_for(n));
    add_chunk(s, 1);
  }

  // 2. Running sequences still in prefill: their blocks were allocated at
  //    admission, so only the token budget limits them.
  for (int64_t id : running_) {
    if (budget <= 0) break;
    Sequence& s = seqs_.at(id);
    const int64_t left = static_cast<int64_t>(s.tokens.size()) - s.num_computed;
    if (left > 1) add_chunk(s, std::min(left, budget));
  }

  // 3. Admissions, strictly FIFO (no overtaking, so a long prompt is not starved
  //    by short ones). None after a preemption: the cache is full and a freshly
  //    admitted sequence would only be preempted again.
  while (step.preempted == 0 && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < max_running_) {
    Sequence& s = seqs_.at(waiting_.front());
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t need = blocks_for(n);
    // The watermark keeps room for the running sequences' next decode blocks;
    // with nothing running the whole cache is there (add() checked it fits).
    const int64_t reserve = running_.empty() ? 0 : watermark_;
    if (need + reserve > alloc_.free_count()) break;
    waiting_.pop_front();
    allocate_to(s, need);
    running_.push_back(s.id);
    add_chunk(s, std::min(n, budget));
  }
  return step;
}

void Scheduler::commit(const StepSchedule& step) {
  for (const ScheduledChunk& c : step.chunks) {
    Sequence& s = seqs_.at(c.seq_id);
    if (s.num_computed != c.start)
      throw InternalError("scheduler: commit() of a chunk that does not continue its sequence");
    s.num_computed = c.start + c.count;
  }
}

Sequence Scheduler::finish(int64_t seq_id) {
  auto it = std::find(running_.begin(), running_.end(), seq_id);
  if (it == running_.end()) throw InternalError("scheduler: finish() of a sequence not running");
  running_.erase(it);
  auto node = seqs_.extract(seq_id);
  Sequence& s = node.mapped();
  for (auto b = s.blocks.rbegin(); b != s.blocks.rend(); ++b) alloc_.free(*b);
  s.blocks.clear();
  return std::move(s);
}

Sequence& Scheduler::sequence(int64_t seq_id) {
  return seqs_.at(seq_id);
}
const Sequence& Scheduler::sequence(int64_t seq_id) const {
  return seqs_.at(seq_id);
}

void Scheduler::check_invariants() const {
  auto fail = [](const std::string& what) { throw InternalError("scheduler invariant: " + what); };
  std::set<int64_t> queued(waiting_.begin(), waiting_.end());
  queued.insert(running_.begin(), running_.end());
  if (queued.size() != seqs_.size() || waiting_.size() + running_.size() != seqs_.size())
    fail("a sequence is not exactly once waiting or running");
  if (static_cast<int64_t>(running_.size()) > max_running_) fail("too many running");
  std::vector<int64_t> owner(static_cast<size_t>(config_.num_blocks), -1);
  int64_t owned = 0;
  for (int64_t id : waiting_) {
    const Sequence& s = seqs_.at(id);
    if (!s.blocks.empty() || s.num_computed != 0) fail("waiting sequence holds cache");
  }
  for (int64_t id : running_) {
    const Sequence& s = seqs_.at(id);
    const int64_t nb = static_cast<int64_t>(s.blocks.size());
    if (nb < blocks_for(s.num_computed) || nb > blocks_for(static_cast<int64_t>(s.tokens.size())))
      fail("sequence " + std::to_string(id) + " holds " + std::to_string(nb) + " blocks for " +
           std::to_string(s.num_computed) + " cached of " + std::to_string(s.tokens.size()));
    for (int32_t b : s.blocks) {
      if (!alloc_.is_allocated(b)) fail("block " + std::to_string(b) + " used but free");
      if (owner[static_cast<size_t>(b)] != -1) fail("block " + std::to_string(b) + " shared");
      owner[static_cast<size_t>(b)] = id;
      ++owned;
    }
  }
  if (owned + alloc_.free_count() != config_.num_blocks)
    fail(std::to_string(config_.num_blocks - owned - alloc_.free_count()) + " blocks leaked");
}

}  // namespace tpinfer
