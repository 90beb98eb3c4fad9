#pragma once
// The step loop of one DP group: continuous batching over a paged KV cache.
// Every TP rank of the group runs its own Engine in lockstep: the same requests
// added in the same order give the same schedule, and sampling from the same
// (all-gathered) logits gives the same tokens, so no per-token broadcast is needed.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/batch.hpp"
#include "base/request.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {

// Runs the model over a step (model::step_tokens in a job): one token, with
// its logprob when asked, per logit row of the batch.
using StepFn = std::function<void(const BatchLayout& batch, StepTokens& out)>;

struct EngineOptions {
  int64_t vocab_size = 0;
  int64_t max_context = 0;  // max_position_embeddings: prompt + generated never exceeds it
  std::vector<int64_t> eos_token_ids;
  int block_size = 16;
  int num_blocks = 0;         // KV-cache blocks available to this group
  int max_running = 64;       // sequences in flight at once
  int max_step_tokens = 512;  // token budget of one forward (prefill chunks + decodes)
  // Full KV blocks are kept and shared by sequences with the same prefix
  // (scheduler.hpp); off, every sequence (each of n completions too) computes
  // its whole prompt.
  bool prefix_cache = true;
  int decode_step_tokens = 0;         // SchedulerConfig::decode_step_tokens
  bool longest_output_first = false;  // SchedulerConfig::longest_output_first
  // The model's tokenizer, for stop strings (the same on every rank); null:
  // add() refuses requests that have stop strings.
  std::shared_ptr<const Tokenizer> tokenizer;
};

struct EngineStats {
  int64_t steps = 0;
  int64_t prompt_tokens = 0;     // prompt tokens of finished requests
  int64_t generated_tokens = 0;  // tokens sampled (including ones later recomputed)
  int64_t computed_tokens = 0;   // tokens run through forward (prefill + decode + recompute)
  int64_t preemptions = 0;
  // Prompt tokens of the sequences admitted (each of n completions counts its
  // prompt), and those found in the prefix cache instead of computed.
  int64_t admitted_prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t evicted_blocks = 0;  // cached blocks given up for new ones
};

class Engine {
 public:
  Engine(EngineOptions options, StepFn step);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request (FIFO). Throws InputError, leaving the engine unchanged,
  // for an empty prompt, a prompt longer than max_context, a token outside the
  // vocabulary, bad sampling settings, or a request whose prompt plus
  // max_new_tokens can never fit the KV cache (rejected rather than clamped, so
  // results never depend on the cache size). A request with nothing to generate
  // finishes at the next step() as "length" with no tokens.
  void add(Request request);
  // Requests added and not yet returned by step().
  int64_t num_unfinished() const;
  // Requests waiting to be scheduled, preempted ones included (the group leader
  // refills below a threshold).
  int64_t num_waiting() const;
  // One forward over the scheduled batch; returns the requests that finished.
  // Call only when num_unfinished() > 0.
  std::vector<Result> step();
  const EngineStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpinfer
