#include "engine/scheduler.hpp"

#include <algorithm>
#include <iterator>
#include <set>
#include <span>
#include <stdexcept>
#include <string>

#include "base/error.hpp"

namespace tpinfer {

Scheduler::Scheduler(SchedulerConfig config)
    : config_(config), pool_(config.num_blocks, std::max(1, config.block_size)) {
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

std::pair<int64_t, int64_t> Sequence::scored_positions(int64_t start, int64_t count) const {
  if (!request.sampling.prompt_logprobs) return {start, start};
  const int64_t first = std::max(start, static_cast<int64_t>(prompt_logprobs.size()));
  return {first, std::max(first, std::min(start + count, prompt_len - 1))};
}

int64_t Sequence::logit_rows(int64_t start, int64_t count) const {
  const auto [first, end] = scored_positions(start, count);
  return (end - first) + (start + count == static_cast<int64_t>(tokens.size()) ? 1 : 0);
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  return (tokens + config_.block_size - 1) / config_.block_size;
}

int64_t Scheduler::add(Sequence seq, bool first) {
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
  const int64_t new_tokens = seq.max_len - n;
  seqs_.emplace(id, std::move(seq));
  if (first) {
    waiting_.push_front(id);
  } else if (config_.longest_output_first) {
    // Behind every preempted sequence, every further completion of a request
    // (queued first to find its prompt cached) and every one with at least as
    // many new tokens to make.
    auto at = waiting_.end();
    while (at != waiting_.begin()) {
      const Sequence& w = seqs_.at(*std::prev(at));
      if (w.admitted || w.choice > 0 ||
          w.max_len - static_cast<int64_t>(w.tokens.size()) >= new_tokens)
        break;
      --at;
    }
    waiting_.insert(at, id);
  } else {
    waiting_.push_back(id);
  }
  return id;
}

void Scheduler::allocate_to(Sequence& s, int64_t n_blocks) {
  while (static_cast<int64_t>(s.blocks.size()) < n_blocks) s.blocks.push_back(pool_.allocate());
}

void Scheduler::release_blocks(Sequence& s) {
  // In reverse, so the LIFO free list hands them out again in their old order.
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) pool_.release(*it);
  s.blocks.clear();
  s.num_computed = 0;
  s.published = 0;
}

void Scheduler::take_cached_prefix(Sequence& s) {
  const int64_t bs = config_.block_size;
  // Whole blocks before the last token: its logits are needed, so it is computed.
  const int64_t most = (static_cast<int64_t>(s.tokens.size()) - 1) / bs;
  while (static_cast<int64_t>(s.blocks.size()) < most) {
    const int64_t i = static_cast<int64_t>(s.blocks.size());
    const int32_t b = pool_.acquire_cached(
        i == 0 ? -1 : s.blocks.back(),
        std::span<const int32_t>(s.tokens.data() + i * bs, static_cast<size_t>(bs)));
    if (b < 0) break;
    s.blocks.push_back(b);
  }
  s.num_computed = static_cast<int64_t>(s.blocks.size()) * bs;
  s.published = static_cast<int64_t>(s.blocks.size());
}

void Scheduler::publish_full_blocks(Sequence& s) {
  const int64_t bs = config_.block_size;
  for (; s.published < s.num_computed / bs; ++s.published) {
    const int64_t i = s.published;
    pool_.publish(s.blocks[static_cast<size_t>(i)],
                  i == 0 ? -1 : s.blocks[static_cast<size_t>(i - 1)],
                  std::span<const int32_t>(s.tokens.data() + i * bs, static_cast<size_t>(bs)));
  }
}

bool Scheduler::awaits_prefill(const Sequence& s,
                               const std::vector<const Sequence*>& filling) const {
  const int64_t bs = config_.block_size;
  // Only whole blocks before s's last token could come from the cache.
  const int64_t s_end = static_cast<int64_t>(s.tokens.size()) - 1;
  if (s_end < bs) return false;
  for (const Sequence* f : filling) {
    // f's prompt blocks are what it publishes; a first block in common is the
    // cheap test before the common length.
    const int64_t limit = std::min(s_end, f->prompt_len);
    if (limit < bs || !std::equal(s.tokens.begin(), s.tokens.begin() + bs, f->tokens.begin()))
      continue;
    const auto diff = std::mismatch(s.tokens.begin(), s.tokens.begin() + limit, f->tokens.begin());
    const int64_t common_blocks = (diff.first - s.tokens.begin()) / bs;
    if (f->published < common_blocks) return true;
  }
  return false;
}

void Scheduler::preempt_newest() {
  const int64_t victim = running_.back();
  running_.pop_back();
  release_blocks(seqs_.at(victim));
  // Preempted sequences go first, oldest in front: they have waited longest.
  waiting_.push_front(victim);
}

StepSchedule Scheduler::schedule() {
  StepSchedule step;
  int64_t budget = config_.max_step_tokens;
  int64_t horizon = 0;  // the most tokens a decoding sequence has still to make
  // Logit rows of the step (the workspace holds max_running_): one per
  // sampling chunk, and one per prompt position a scoring sequence scores.
  int64_t rows = max_running_;
  auto add_chunk = [&](const Sequence& s, int64_t count) {
    const bool samples = s.num_computed + count == static_cast<int64_t>(s.tokens.size());
    step.chunks.push_back({s.id, s.num_computed, count, samples});
    step.num_tokens += count;
    budget -= count;
    rows -= s.logit_rows(s.num_computed, count);
  };
  // The longest chunk of s, up to `count` tokens, whose logit rows fit; 0: none.
  auto fitting = [&](const Sequence& s, int64_t count) {
    while (count > 0 && s.logit_rows(s.num_computed, count) > rows) {
      const int64_t over = s.logit_rows(s.num_computed, count) - rows;
      count -= std::min(count, std::max<int64_t>(1, over));
    }
    return count;
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
    while (need > pool_.available()) {
      preempted_self = running_.back() == s.id;
      preempt_newest();
      ++step.preempted;
      if (preempted_self) break;
    }
    if (preempted_self) break;  // it was the last running sequence
    allocate_to(s, blocks_for(n));
    add_chunk(s, 1);
    horizon = std::max(horizon, s.max_len - n);
  }

  // A step with decodes takes prompt tokens up to decode_step_tokens in all,
  // but for a sequence with at least as many tokens to make as any decode
  // still has, less one (a prompt cut over two steps loses one): started
  // later, it would end the run later (equal outputs, as in a file of 128/128
  // requests, then fill the batch at full budget).
  const bool capped = config_.decode_step_tokens > 0 && step.num_tokens > 0;
  auto room = [&](const Sequence& s) {
    const bool cannot_wait = s.max_len - static_cast<int64_t>(s.tokens.size()) + 1 >= horizon;
    if (!capped || cannot_wait) return budget;
    return std::min<int64_t>(budget, config_.decode_step_tokens - step.num_tokens);
  };

  // 2. Running sequences still in prefill: their blocks were allocated at
  //    admission, so only the token budget limits them.
  for (int64_t id : running_) {
    if (budget <= 0) break;
    Sequence& s = seqs_.at(id);
    const int64_t left = static_cast<int64_t>(s.tokens.size()) - s.num_computed;
    const int64_t limit = left > 1 ? room(s) : 0;
    if (limit <= 0) continue;
    const int64_t count = fitting(s, std::min(left, limit));
    if (count > 0) add_chunk(s, count);
  }

  // 3. Admissions in queue order (no overtaking, so a long prompt is not
  //    starved by short ones). None after a preemption: the cache is full and a
  //    freshly admitted sequence would only be preempted again. With the prefix
  //    cache, a sequence that shares blocks a running prefill has yet to compute
  //    waits for them rather than compute them a second time, and the scan goes
  //    on past it: that wait ends when the prefill passes those blocks.
  std::vector<const Sequence*> filling;
  if (config_.prefix_cache)
    for (int64_t id : running_) {
      const Sequence& f = seqs_.at(id);
      if (f.num_computed < f.prompt_len) filling.push_back(&f);
    }
  size_t at = 0;
  while (step.preempted == 0 && budget > 0 && at < waiting_.size() &&
         static_cast<int64_t>(running_.size()) < max_running_) {
    Sequence& s = seqs_.at(waiting_[at]);
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const bool from_cache = config_.prefix_cache && !s.scores_prompt();
    if (from_cache && awaits_prefill(s, filling)) {
      ++at;
      ++step.deferred;
      continue;
    }
    const int64_t limit = room(s);
    if (limit <= 0) break;  // no overtaking (a deferred sequence is not overtaken: it waits)
    if (from_cache) take_cached_prefix(s);
    const int64_t need = blocks_for(n) - static_cast<int64_t>(s.blocks.size());
    // The watermark keeps room for the running sequences' next decode blocks;
    // with nothing running the whole cache is there (add() checked it fits).
    const int64_t reserve = running_.empty() ? 0 : watermark_;
    if (need + reserve > pool_.available()) {
      release_blocks(s);
      break;
    }
    const int64_t count = fitting(s, std::min(n - s.num_computed, limit));
    if (count == 0) {
      release_blocks(s);
      break;
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(at));
    if (!s.admitted) {
      s.admitted = true;
      step.admitted_prompt_tokens += s.prompt_len;
      step.cached_tokens += std::min(s.num_computed, s.prompt_len);
    }
    allocate_to(s, blocks_for(n));
    running_.push_back(s.id);
    add_chunk(s, count);
    if (config_.prefix_cache && s.num_computed < s.prompt_len) filling.push_back(&s);
  }
  return step;
}

void Scheduler::commit(const StepSchedule& step) {
  for (const ScheduledChunk& c : step.chunks) {
    Sequence& s = seqs_.at(c.seq_id);
    if (s.num_computed != c.start)
      throw InternalError("scheduler: commit() of a chunk that does not continue its sequence");
    s.num_computed = c.start + c.count;
    if (config_.prefix_cache) publish_full_blocks(s);
  }
}

Sequence Scheduler::finish(int64_t seq_id) {
  auto it = std::find(running_.begin(), running_.end(), seq_id);
  if (it == running_.end()) throw InternalError("scheduler: finish() of a sequence not running");
  running_.erase(it);
  auto node = seqs_.extract(seq_id);
  Sequence& s = node.mapped();
  const int64_t computed = s.num_computed;
  release_blocks(s);
  s.num_computed = computed;
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
  std::vector<int> holders(static_cast<size_t>(config_.num_blocks), 0);
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
    for (int32_t b : s.blocks) ++holders[static_cast<size_t>(b)];
  }
  int unheld = 0;
  for (int32_t b = 0; b < config_.num_blocks; ++b) {
    const int h = holders[static_cast<size_t>(b)];
    if (pool_.refs(b) != h)
      fail("block " + std::to_string(b) + " has " + std::to_string(pool_.refs(b)) +
           " references and " + std::to_string(h) + " holders");
    if (h > 1 && !pool_.is_cached(b)) fail("block " + std::to_string(b) + " shared uncached");
    unheld += h == 0;
  }
  if (unheld != pool_.available())
    fail(std::to_string(unheld - pool_.available()) + " blocks leaked");
}

}  // namespace tpinfer
