#include "engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "base/error.hpp"
#include "base/sampler.hpp"
#include "engine/scheduler.hpp"
#include "text/stop_matcher.hpp"

namespace tpinfer {
namespace {

SchedulerConfig scheduler_config(const EngineOptions& o) {
  if (o.vocab_size < 1) throw UsageError("engine: vocab_size must be >= 1");
  if (o.max_context < 1 || o.max_context > std::numeric_limits<int32_t>::max())
    throw UsageError("engine: max_context must be in [1, 2^31)");
  if (o.block_size < 1 || o.num_blocks < 1)
    throw UsageError("engine: the KV cache needs block_size >= 1 and num_blocks >= 1, got " +
                     std::to_string(o.block_size) + " and " + std::to_string(o.num_blocks));
  // Slots are int32 in the batch layout.
  if (static_cast<int64_t>(o.num_blocks) * o.block_size > std::numeric_limits<int32_t>::max())
    throw UsageError("engine: num_blocks x block_size exceeds 2^31 slots");
  if (o.max_running < 1 || o.max_step_tokens < 1)
    throw UsageError("engine: max_running and max_step_tokens must be >= 1");
  if (o.decode_step_tokens < 0) throw UsageError("engine: decode_step_tokens must be >= 0");
  return {o.block_size,   o.num_blocks,         o.max_running,         o.max_step_tokens,
          o.prefix_cache, o.decode_step_tokens, o.longest_output_first};
}

std::string describe(const Request& r) {
  return "request " + r.id_json + " (line " + std::to_string(r.line) + ")";
}

bool contains(const std::vector<int32_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}
bool contains(const std::vector<int64_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  StepFn run_step;
  Scheduler scheduler;
  EngineStats stats;
  std::vector<Result> ready;  // finished at add() (nothing to generate), returned by next step()
  // A request's n completions: the first prefills the prompt; once it has
  // sampled, the others are queued first in line and find the prompt's full
  // blocks in the prefix cache. The result is returned when all n are done.
  struct Family {
    Request request;  // its prompt is the completions' first tokens
    std::vector<Completion> choices;
    std::vector<float> prompt_logprobs;
    std::vector<std::vector<TokenLogprob>> prompt_top_logprobs;
    int done = 0;
    bool forked = false;
  };
  std::map<int64_t, Family> families;
  int64_t next_family = 0;
  BatchLayout batch;
  // Per logit row: its sequence, and whether it scores a prompt position
  // (else it samples the sequence's next token).
  std::vector<std::pair<Sequence*, bool>> row_owner;
  StepTokens tokens;
  StopStrings stop_strings;

  Impl(EngineOptions o, StepFn f)
      : options(std::move(o)),
        run_step(std::move(f)),
        scheduler(scheduler_config(options)),
        stop_strings(options.tokenizer) {
    TPINFER_ASSERT(run_step, "engine: no step function");
  }

  void build_batch(const StepSchedule& step);
  Sequence completion(const Family& f, int64_t family, int choice) const;
  void fork(int64_t family);
  // The sequence's completion is done; the family's result once all are.
  std::optional<Result> complete(Sequence&& s, const char* finish_reason);
  Result result_of(Family&& f);
};

void Engine::Impl::build_batch(const StepSchedule& step) {
  BatchLayout& b = batch;
  const int bs = options.block_size;
  b.block_size = bs;
  b.token_ids.clear();
  b.positions.clear();
  b.slot_mapping.clear();
  b.query_start.assign(1, 0);
  b.context_len.clear();
  b.logit_rows.clear();
  b.full_logits.clear();
  b.sampling.clear();
  row_owner.clear();
  int64_t max_blocks = 0;
  for (const ScheduledChunk& c : step.chunks)
    max_blocks = std::max(max_blocks, scheduler.blocks_for(c.start + c.count));
  b.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  b.block_tables.assign(step.chunks.size() * static_cast<size_t>(max_blocks), -1);

  for (size_t i = 0; i < step.chunks.size(); ++i) {
    const ScheduledChunk& c = step.chunks[i];
    Sequence& s = scheduler.sequence(c.seq_id);
    for (int64_t pos = c.start; pos < c.start + c.count; ++pos) {
      b.token_ids.push_back(s.tokens[pos]);
      b.positions.push_back(static_cast<int32_t>(pos));
      b.slot_mapping.push_back(s.blocks[pos / bs] * bs + static_cast<int32_t>(pos % bs));
    }
    b.query_start.push_back(b.num_tokens());
    const int64_t context = c.start + c.count;
    b.context_len.push_back(static_cast<int32_t>(context));
    // Only the blocks the context covers: a sequence in prefill already holds
    // blocks for the rest of its prompt, which the kernels must not read yet.
    std::copy_n(s.blocks.begin(), scheduler.blocks_for(context),
                b.block_tables.begin() + static_cast<int64_t>(i) * max_blocks);
    const SamplingParams& p = s.request.sampling;
    const auto [first, end] = s.scored_positions(c.start, c.count);
    const int32_t chunk_first_token = b.num_tokens() - static_cast<int32_t>(c.count);
    for (int64_t pos = first; pos < end; ++pos) {
      b.logit_rows.push_back(chunk_first_token + static_cast<int32_t>(pos - c.start));
      b.full_logits.push_back(0);
      RowSampling score;
      score.target = s.tokens[static_cast<size_t>(pos + 1)];
      score.top_logprobs = p.top_logprobs;
      b.sampling.push_back(score);
      row_owner.emplace_back(&s, true);
    }
    if (c.samples) {
      b.logit_rows.push_back(b.num_tokens() - 1);
      b.full_logits.push_back(p.temperature > 0 || p.logprobs ? 1 : 0);
      // The token goes to position tokens.size() (this chunk ends the sequence).
      b.sampling.push_back({p.temperature, p.top_p, p.top_k, p.seed,
                            static_cast<int64_t>(s.tokens.size()), p.logprobs, p.top_logprobs});
      row_owner.emplace_back(&s, false);
    }
  }
}

Sequence Engine::Impl::completion(const Family& f, int64_t family, int choice) const {
  const Request& r = f.request;
  const int64_t n = static_cast<int64_t>(r.prompt.size());
  Sequence s;
  s.prompt_len = n;
  s.max_len = n + std::min(r.sampling.max_new_tokens, options.max_context - n);
  s.tokens = r.prompt;
  s.request.id_json = r.id_json;
  s.request.line = r.line;
  s.request.sampling = r.sampling;
  s.request.sampling.seed = completion_seed(r.sampling.seed, choice);
  // The prompt is scored once, by the first completion.
  s.request.sampling.prompt_logprobs = r.sampling.prompt_logprobs && choice == 0;
  s.family = family;
  s.choice = choice;
  return s;
}

void Engine::Impl::fork(int64_t family) {
  Family& f = families.at(family);
  f.forked = true;
  // Pushed to the front last to first, so they run in order.
  for (int i = f.request.n - 1; i >= 1; --i) {
    Sequence s = completion(f, family, i);
    if (s.max_len == s.prompt_len) {  // nothing to generate (the first only scores the prompt)
      f.choices[static_cast<size_t>(i)].finish_reason = "length";
      ++f.done;
      continue;
    }
    const int64_t id = scheduler.add(std::move(s), /*first=*/true);
    stop_strings.add(id, scheduler.sequence(id).request.sampling);
  }
}

std::optional<Result> Engine::Impl::complete(Sequence&& s, const char* finish_reason) {
  Family& f = families.at(s.family);
  Completion& c = f.choices.at(static_cast<size_t>(s.choice));
  if (!s.score_only) {
    c.tokens.assign(s.tokens.begin() + s.prompt_len, s.tokens.end());
    if (s.request.sampling.logprobs) c.logprobs = std::move(s.logprobs);
    c.top_logprobs = std::move(s.top_logprobs);
  }
  c.finish_reason = finish_reason;
  if (s.choice == 0) {
    f.prompt_logprobs = std::move(s.prompt_logprobs);
    f.prompt_top_logprobs = std::move(s.prompt_top_logprobs);
  }
  if (++f.done < f.request.n) return std::nullopt;
  Result r = result_of(std::move(f));
  families.erase(s.family);
  return r;
}

Result Engine::Impl::result_of(Family&& f) {
  Result r;
  r.id_json = std::move(f.request.id_json);
  r.line = f.request.line;
  r.choices = std::move(f.choices);
  r.prompt_logprobs = std::move(f.prompt_logprobs);
  r.prompt_top_logprobs = std::move(f.prompt_top_logprobs);
  r.prompt_tokens = static_cast<int64_t>(f.request.prompt.size());
  r.metadata_json = std::move(f.request.metadata_json);
  stats.prompt_tokens += r.prompt_tokens;
  return r;
}

Engine::Engine(EngineOptions options, StepFn step)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(step))) {}

Engine::~Engine() = default;

void Engine::add(Request request) {
  const EngineOptions& o = impl_->options;
  const SamplingParams& sp = request.sampling;
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  auto reject = [&](const std::string& why) { throw InputError(describe(request) + ": " + why); };
  if (n == 0) reject("empty prompt");
  if (n > o.max_context)
    reject("prompt of " + std::to_string(n) + " tokens exceeds the model's context of " +
           std::to_string(o.max_context));
  for (int32_t t : request.prompt)
    if (t < 0 || t >= o.vocab_size)
      reject("prompt token " + std::to_string(t) + " outside the vocabulary [0, " +
             std::to_string(o.vocab_size) + ")");
  if (sp.max_new_tokens < 0) reject("max_new_tokens must be >= 0");
  if (!(sp.temperature >= 0.0f) || !std::isfinite(sp.temperature))
    reject("temperature must be a finite number >= 0");
  if (sp.top_k < 0) reject("top_k must be >= 0");
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f)) reject("top_p must be in (0, 1]");
  if (const std::string why = impl_->stop_strings.refusal(sp); !why.empty()) reject(why);
  if (request.n < 1 || request.n > kMaxCompletions)
    reject("n must be in [1, " + std::to_string(kMaxCompletions) + "], got " +
           std::to_string(request.n));
  if (sp.top_logprobs < 0 || sp.top_logprobs > kMaxTopLogprobs)
    reject("top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "]");

  Impl& m = *impl_;
  const int64_t family = m.next_family;
  Impl::Family f;
  f.choices.resize(static_cast<size_t>(request.n));
  f.request = std::move(request);
  Sequence first = m.completion(f, family, 0);
  if (first.max_len == n && f.request.sampling.prompt_logprobs && n >= 2) {
    // Only the prompt's logprobs are asked (log-likelihood scoring): run it,
    // draw one token for the step's sake and drop it.
    first.max_len = n + 1;
    first.score_only = true;
  }
  if (first.max_len == n) {
    // No room to generate (max_new_tokens 0, or the prompt fills the context).
    for (Completion& c : f.choices) c.finish_reason = "length";
    m.ready.push_back(m.result_of(std::move(f)));
    return;
  }
  // Checked first: it throws (leaving the engine unchanged) for a sequence
  // that can never fit, and every completion of the request is as long.
  const int64_t id = m.scheduler.add(std::move(first));
  ++m.next_family;
  f.forked = f.request.n == 1;
  m.families.emplace(family, std::move(f));
  m.stop_strings.add(id, m.scheduler.sequence(id).request.sampling);
}

int64_t Engine::num_unfinished() const {
  return impl_->scheduler.num_waiting() + impl_->scheduler.num_running() +
         static_cast<int64_t>(impl_->ready.size());
}

int64_t Engine::num_waiting() const {
  return impl_->scheduler.num_waiting();
}

const EngineStats& Engine::stats() const {
  return impl_->stats;
}

std::vector<Result> Engine::step() {
  Impl& m = *impl_;
  std::vector<Result> finished = std::move(m.ready);
  m.ready.clear();

  const StepSchedule step = m.scheduler.schedule();
  m.stats.preemptions += step.preempted;
  m.stats.cached_tokens += step.cached_tokens;
  m.stats.admitted_prompt_tokens += step.admitted_prompt_tokens;
  if (step.chunks.empty()) {
    if (m.scheduler.num_waiting() + m.scheduler.num_running() > 0)
      throw InternalError("engine: the scheduler made no progress with work pending");
    return finished;
  }

  m.build_batch(step);
  const size_t rows = m.batch.logit_rows.size();
  m.run_step(m.batch, m.tokens);
  if (m.tokens.drawn.size() != rows)
    throw InternalError("engine: the step returned " + std::to_string(m.tokens.drawn.size()) +
                        " tokens for " + std::to_string(rows) + " logit rows");
  m.scheduler.commit(step);
  m.stats.evicted_blocks = m.scheduler.evicted_blocks();
  ++m.stats.steps;
  m.stats.computed_tokens += step.num_tokens;

  const std::vector<TokenLogprob>& drawn = m.tokens.drawn;
  for (size_t r = 0; r < rows; ++r) {
    auto [seq, scores] = m.row_owner[r];
    Sequence& s = *seq;
    if (scores) {
      s.prompt_logprobs.push_back(drawn[r].logprob);
      if (s.request.sampling.top_logprobs > 0)
        s.prompt_top_logprobs.push_back(r < m.tokens.top.size() ? m.tokens.top[r]
                                                                : std::vector<TokenLogprob>{});
      continue;
    }
    const int32_t token = drawn[r].token;
    s.tokens.push_back(token);
    if (s.request.sampling.logprobs) s.logprobs.push_back(drawn[r].logprob);
    if (s.request.sampling.top_logprobs > 0)
      s.top_logprobs.push_back(r < m.tokens.top.size() ? m.tokens.top[r]
                                                       : std::vector<TokenLogprob>{});
    ++m.stats.generated_tokens;
    // The stop token stays in the output, as Hugging Face generate() returns it.
    const char* reason = nullptr;
    if ((!s.request.sampling.ignore_eos && contains(m.options.eos_token_ids, token)) ||
        contains(s.request.sampling.stop_token_ids, token))
      reason = "stop";
    else if (m.stop_strings.push(s.id, token))
      reason = "stop";
    else if (static_cast<int64_t>(s.tokens.size()) >= s.max_len)
      reason = "length";
    // The prompt's blocks are computed and published: the other completions
    // of the request start from them.
    if (!m.families.at(s.family).forked) m.fork(s.family);
    if (reason) {
      const int64_t id = s.id;
      Sequence done = m.scheduler.finish(id);
      Impl::Family& f = m.families.at(done.family);
      m.stop_strings.finish(id, f.choices.at(static_cast<size_t>(done.choice)));
      if (std::optional<Result> r = m.complete(std::move(done), reason))
        finished.push_back(std::move(*r));
    }
  }
  return finished;
}

}  // namespace tpinfer
