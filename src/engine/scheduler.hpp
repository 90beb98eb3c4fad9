#pragma once
// Continuous batching over a paged KV cache, with chunked prefill and
// preemption by recompute. The schedule is a pure function of the calls made
// (no clocks, no hashing of pointers), so the TP ranks of a group, each running
// its own copy, agree on every step without talking.
//
// One sequence's life: waiting (in order) -> admitted to running, which allocates
// blocks for all its current tokens at once -> prefill in chunks within the
// step budget -> one decode token per step -> finished. A sequence whose next
// token needs a block when none is free makes the scheduler preempt the most
// recently admitted running sequence: its blocks are freed, it goes back to the
// front of the waiting queue, and on re-admission its prompt and the tokens it
// already generated are recomputed as one prefill (they are kept, not re-sampled).
//
// With the prefix cache on, a computed full block is published to the block
// pool (kv_blocks.hpp) and an admitted sequence starts from the longest run of
// cached blocks matching its tokens: it prefills only the rest (always at least
// its last token, whose logits it needs). A preempted sequence finds its own
// blocks again unless they were evicted meanwhile. A waiting sequence whose
// prefix a running prefill is computing waits until it is published, while
// the sequences behind it may be admitted: an offline file grouped by prefix
// (the coordinator's order) computes each prefix once, not once per request
// that a large step admits together.
#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "base/request.hpp"
#include "engine/kv_blocks.hpp"

namespace tpinfer {

struct SchedulerConfig {
  int block_size = 16;
  int num_blocks = 0;
  int max_running = 64;
  int max_step_tokens = 512;
  bool prefix_cache = false;
  // Token budget of a step that carries decode tokens (decodes + prompt
  // chunks); 0: max_step_tokens. Smaller spreads prompts over the decode
  // steps, which then have compute to spare, instead of a few steps of prompts
  // alone followed by decode steps of a shrinking batch. A sequence with at
  // least as many tokens to make as the longest running decode is exempt: it
  // cannot start later without ending the run later.
  int decode_step_tokens = 0;
  // Waiting sequences in order of new tokens to make, most first (stable;
  // preempted ones still lead): the longest decodes start first, so the run
  // ends with fewer steps of a small batch. Off: arrival order.
  bool longest_output_first = false;
};

struct Sequence {
  int64_t id = 0;               // given by Scheduler::add, increasing in arrival order
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t prompt_len = 0;
  int64_t max_len = 0;          // tokens.size() never exceeds it; the sequence ends there
  int64_t num_computed = 0;     // leading tokens whose K/V are in the cache
  std::vector<int32_t> blocks;  // blocks[i] holds positions [i*block_size, (i+1)*block_size)
  int64_t published = 0;        // leading blocks offered to the prefix cache
  bool admitted = false;        // once: a re-admission after preemption counts no prompt again
  Request request;              // id, line and sampling params (the prompt lives in tokens)
  int64_t family = 0;           // the engine's request this is a completion of
  bool score_only = false;      // runs the prompt for its logprobs; its one token is dropped
  int choice = 0;               // which of the request's n completions
  std::vector<float> logprobs;  // per generated token, when asked
  std::vector<std::vector<TokenLogprob>> top_logprobs;  // per generated token, when asked
  // prompt_logprobs[p]: token p+1's given tokens 0..p, when asked.
  std::vector<float> prompt_logprobs;
  std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;  // with top_logprobs too

  // Still to score prompt positions (prompt logprobs): every prompt token's
  // logits are needed, so nothing comes from the prefix cache.
  bool scores_prompt() const {
    return request.sampling.prompt_logprobs &&
           static_cast<int64_t>(prompt_logprobs.size()) < prompt_len - 1;
  }
  // The prompt positions [first, end) of tokens [start, start + count) still
  // to score (empty unless prompt logprobs are asked; a recompute after
  // preemption skips those already scored): position p scores token p + 1.
  std::pair<int64_t, int64_t> scored_positions(int64_t start, int64_t count) const;
  // Logit rows of tokens [start, start + count): the positions still to score,
  // and the last token's when the chunk ends the sequence.
  int64_t logit_rows(int64_t start, int64_t count) const;
};

// Tokens [start, start + count) of one sequence go through this step's forward.
struct ScheduledChunk {
  int64_t seq_id = 0;
  int64_t start = 0;
  int64_t count = 0;
  bool samples = false;  // the chunk ends at the last token: its logits give the next token
};

struct StepSchedule {
  std::vector<ScheduledChunk> chunks;  // decodes, then continued prefills, then admissions
  int64_t num_tokens = 0;
  int64_t preempted = 0;
  // Sequences admitted for the first time: their prompt tokens, and those of
  // them found in the prefix cache (the hit rate's two sides).
  int64_t admitted_prompt_tokens = 0;
  int64_t cached_tokens = 0;
  // Waiting sequences passed over because a running prefill is computing
  // their prefix (they take it from the cache once it is published).
  int64_t deferred = 0;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config);

  // Queues a sequence (tokens non-empty, max_len > tokens.size(), no blocks) and
  // returns its id; `first` puts it at the front of the queue. Throws
  // InputError, leaving the scheduler unchanged, when the sequence could not
  // fit even in the whole cache at its longest: it would otherwise wait or
  // thrash forever.
  int64_t add(Sequence seq, bool first = false);

  // Picks this step's work and allocates its blocks. Non-empty whenever a
  // sequence is unfinished (the oldest running one always fits, see add()).
  StepSchedule schedule();
  // After the forward ran: the scheduled tokens are now cached.
  void commit(const StepSchedule& step);
  // Removes a running sequence that is done and frees its blocks.
  Sequence finish(int64_t seq_id);

  Sequence& sequence(int64_t seq_id);
  const Sequence& sequence(int64_t seq_id) const;

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  const std::deque<int64_t>& waiting() const { return waiting_; }
  const std::vector<int64_t>& running() const { return running_; }
  // Blocks a sequence can get: free, or cached and held by nobody.
  int free_blocks() const { return pool_.available(); }
  int64_t evicted_blocks() const { return pool_.evictions(); }
  const SchedulerConfig& config() const { return config_; }
  int64_t blocks_for(int64_t tokens) const;

  // Throws InternalError when a block is leaked, shared but not cached, held
  // with a wrong reference count, or a sequence's blocks do not match its state.
  void check_invariants() const;

 private:
  void preempt_newest();
  void allocate_to(Sequence& s, int64_t n_blocks);
  void release_blocks(Sequence& s);
  // Whether a running prefill in `filling` has yet to publish blocks that s
  // would start with: s then waits instead of computing them too.
  bool awaits_prefill(const Sequence& s, const std::vector<const Sequence*>& filling) const;
  // Takes the cached blocks that start s (its first tokens, up to the last).
  void take_cached_prefix(Sequence& s);
  void publish_full_blocks(Sequence& s);

  SchedulerConfig config_;
  int max_running_ = 0;  // config.max_running capped by the step budget
  int watermark_ = 0;    // blocks kept free at admission so decodes do not preempt at once
  KvBlockPool pool_;
  std::map<int64_t, Sequence> seqs_;
  std::deque<int64_t> waiting_;
  std::vector<int64_t> running_;  // in admission order, oldest first
  int64_t next_id_ = 0;
};

}  // namespace tpinfer
