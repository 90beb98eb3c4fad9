// KV block allocator and scheduler: invariants under random load, exact
// schedules for chunked prefill and preemption, determinism.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "base/error.hpp"
#include "engine/kv_blocks.hpp"
#include "engine/scheduler.hpp"

namespace tpinfer {
namespace {

TEST(KvBlocks, HandsOutEveryBlockOnceInOrder) {
  KvBlockPool a(5, 4);
  EXPECT_EQ(a.available(), 5);
  std::vector<int32_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(a.allocate());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(a.available(), 0);
  EXPECT_THROW(a.allocate(), InternalError);
  for (int32_t b : got) EXPECT_EQ(a.refs(b), 1);
  a.release(3);
  a.release(1);
  EXPECT_EQ(a.refs(3), 0);
  EXPECT_EQ(a.available(), 2);
  // LIFO: the same calls give the same ids on every rank.
  EXPECT_EQ(a.allocate(), 1);
  EXPECT_EQ(a.allocate(), 3);
}

TEST(KvBlocks, RejectsDoubleReleaseAndBadIds) {
  KvBlockPool a(3, 4);
  const int32_t b = a.allocate();
  a.release(b);
  EXPECT_THROW(a.release(b), InternalError);
  EXPECT_THROW(a.release(2), InternalError);  // never allocated
  EXPECT_THROW(a.release(-1), InternalError);
  EXPECT_THROW(a.release(3), InternalError);
  EXPECT_EQ(a.available(), 3);
}

TEST(KvBlocks, CachedBlocksAreFoundByTokensAndTheBlockBefore) {
  KvBlockPool a(6, 2);
  const std::vector<int32_t> t01 = {7, 8}, t23 = {9, 10};
  const int32_t first = a.allocate(), second = a.allocate();
  a.publish(first, -1, t01);
  a.publish(second, first, t23);
  // Held by its writer and now by a reader: two references, nothing new used.
  EXPECT_EQ(a.acquire_cached(-1, t01), first);
  EXPECT_EQ(a.refs(first), 2);
  EXPECT_EQ(a.acquire_cached(first, t23), second);
  // The same tokens after another block, or other tokens: no hit.
  EXPECT_EQ(a.acquire_cached(-1, t23), -1);
  const int32_t other = a.allocate();
  EXPECT_EQ(a.acquire_cached(other, t23), -1);
  // A second block with equal contents is not published over the first.
  const int32_t twin = a.allocate();
  a.publish(twin, -1, t01);
  EXPECT_FALSE(a.is_cached(twin));
  EXPECT_THROW(a.acquire_cached(-1, std::vector<int32_t>{1}), InternalError);  // not a block
}

TEST(KvBlocks, UnheldCachedBlocksStayUntilEvictedLeastRecentlyReleasedFirst) {
  KvBlockPool a(3, 1);
  const std::vector<int32_t> x = {1}, y = {2}, z = {3};
  const int32_t bx = a.allocate(), by = a.allocate(), bz = a.allocate();
  a.publish(bx, -1, x);
  a.publish(by, -1, y);
  a.publish(bz, -1, z);
  a.release(by);
  a.release(bx);
  EXPECT_EQ(a.available(), 2);             // idle blocks count as available
  EXPECT_EQ(a.acquire_cached(-1, y), by);  // found again: held, no longer idle
  EXPECT_EQ(a.available(), 1);
  a.release(by);                // now bx was released before by
  EXPECT_EQ(a.allocate(), bx);  // no free block: the least recently released goes
  EXPECT_EQ(a.evictions(), 1);
  EXPECT_FALSE(a.is_cached(bx));
  EXPECT_EQ(a.acquire_cached(-1, x), -1);
  EXPECT_EQ(a.acquire_cached(-1, y), by);
  // Free blocks go before idle cached ones; then the idle longest is evicted.
  a.release(bz);
  a.release(by);
  a.release(bx);  // uncached since its eviction: free
  const int32_t p = a.allocate();
  EXPECT_EQ(p, bx);
  a.publish(p, -1, x);
  const int32_t child = a.allocate();
  EXPECT_EQ(child, bz);
  a.publish(child, p, y);
  a.release(child);
  EXPECT_EQ(a.acquire_cached(p, y), child);
  // The block before it replaced: the key naming it no longer matches.
  a.release(p);
  a.release(child);
  EXPECT_EQ(a.allocate(), by);
  EXPECT_EQ(a.allocate(), p);  // new contents
  EXPECT_TRUE(a.is_cached(child));
  EXPECT_EQ(a.acquire_cached(p, y), -1);
}

Sequence make_seq(int64_t prompt, int64_t max_len) {
  Sequence s;
  for (int64_t i = 0; i < prompt; ++i) s.tokens.push_back(static_cast<int32_t>(i % 50));
  s.prompt_len = prompt;
  s.max_len = max_len;
  s.request.id_json = "\"s\"";
  return s;
}

// What the engine does after a forward: commit, then append a token to every
// sequence that sampled and finish the ones at max_len.
std::vector<int64_t> complete_step(Scheduler& s, const StepSchedule& step) {
  s.commit(step);
  std::vector<int64_t> done;
  for (const ScheduledChunk& c : step.chunks) {
    if (!c.samples) continue;
    Sequence& q = s.sequence(c.seq_id);
    q.tokens.push_back(7);
    if (static_cast<int64_t>(q.tokens.size()) == q.max_len) done.push_back(c.seq_id);
  }
  for (int64_t id : done) s.finish(id);
  return done;
}

TEST(Scheduler, RejectsSequencesThatCanNeverFit) {
  Scheduler s({4, 2, 8, 64});  // 8 cached tokens at most
  // max_len 9: 8 tokens are ever cached (the last one is only sampled).
  EXPECT_NO_THROW(s.add(make_seq(3, 9)));
  EXPECT_THROW(s.add(make_seq(3, 10)), InputError);
  EXPECT_THROW(s.add(make_seq(9, 12)), InputError);
  EXPECT_EQ(s.num_waiting(), 1);
  s.check_invariants();
  // The one that fits exactly runs to the end alone.
  int steps = 0;
  while (s.num_running() + s.num_waiting() > 0) {
    complete_step(s, s.schedule());
    s.check_invariants();
    ASSERT_LT(++steps, 20);
  }
  EXPECT_EQ(s.free_blocks(), 2);
}

TEST(Scheduler, ChunkedPrefillWithinTheBudget) {
  Scheduler s({4, 100, 8, 4});
  const int64_t a = s.add(make_seq(10, 20));
  StepSchedule st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 1u);
  EXPECT_EQ(st.chunks[0].start, 0);
  EXPECT_EQ(st.chunks[0].count, 4);
  EXPECT_FALSE(st.chunks[0].samples);
  EXPECT_EQ(s.sequence(a).blocks.size(), 3u);  // the whole prompt's blocks at admission
  complete_step(s, st);
  const int64_t b = s.add(make_seq(3, 20));
  st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 1u);  // the budget went to a's second chunk; b waits
  EXPECT_EQ(st.chunks[0].start, 4);
  EXPECT_EQ(st.chunks[0].count, 4);
  complete_step(s, st);
  st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 2u);  // a's last 2 prompt tokens (samples), then 2 of b's 3
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(st.chunks[0].count, 2);
  EXPECT_TRUE(st.chunks[0].samples);
  EXPECT_EQ(st.chunks[1].seq_id, b);
  EXPECT_EQ(st.chunks[1].count, 2);
  EXPECT_FALSE(st.chunks[1].samples);
  complete_step(s, st);
  st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 2u);  // a's decode first, then the rest of b
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(st.chunks[0].start, 10);
  EXPECT_EQ(st.chunks[0].count, 1);
  EXPECT_TRUE(st.chunks[0].samples);
  EXPECT_EQ(st.chunks[1].seq_id, b);
  EXPECT_EQ(st.chunks[1].start, 2);
  EXPECT_EQ(st.chunks[1].count, 1);
  EXPECT_TRUE(st.chunks[1].samples);
  EXPECT_EQ(st.num_tokens, 2);
  s.check_invariants();
}

// A step that carries decodes takes prompt tokens only up to
// decode_step_tokens in all; a step without decodes keeps max_step_tokens.
TEST(Scheduler, DecodeStepsTakeFewerPromptTokens) {
  SchedulerConfig c{4, 100, 8, 16};
  c.decode_step_tokens = 6;
  Scheduler s(c);
  const int64_t a = s.add(make_seq(2, 20)), b = s.add(make_seq(2, 20));
  StepSchedule st = s.schedule();  // no decodes yet: both prompts, 4 tokens
  EXPECT_EQ(st.num_tokens, 4);
  complete_step(s, st);
  const int64_t big = s.add(make_seq(30, 40));
  st = s.schedule();  // two decodes, then 4 of the 30 prompt tokens
  ASSERT_EQ(st.chunks.size(), 3u);
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(st.chunks[1].seq_id, b);
  EXPECT_EQ(st.chunks[2].seq_id, big);
  EXPECT_EQ(st.chunks[2].count, 4);
  EXPECT_EQ(st.num_tokens, 6);
  complete_step(s, st);
  s.check_invariants();
}

// The cap spares a sequence that cannot wait: one with as many tokens to make
// as the longest running decode (a file of equal requests fills its batch at
// the full budget).
TEST(Scheduler, DecodeStepsGiveTheFullBudgetToASequenceThatCannotWait) {
  SchedulerConfig c{4, 100, 8, 16};
  c.decode_step_tokens = 6;
  Scheduler s(c);
  const int64_t a = s.add(make_seq(2, 20)), b = s.add(make_seq(2, 20));
  complete_step(s, s.schedule());  // a and b decode next, 17 tokens still to make each
  const int64_t patient = s.add(make_seq(30, 40));  // 10 to make: capped
  const int64_t urgent = s.add(make_seq(30, 48));   // 18 to make: the full budget
  StepSchedule st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 4u);
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(st.chunks[1].seq_id, b);
  EXPECT_EQ(st.chunks[2].seq_id, patient);
  EXPECT_EQ(st.chunks[2].count, 4);  // up to the cap
  EXPECT_EQ(st.chunks[3].seq_id, urgent);
  EXPECT_EQ(st.chunks[3].count, 10);  // the rest of max_step_tokens
  complete_step(s, st);
  s.check_invariants();

  SchedulerConfig lo = c;
  lo.longest_output_first = true;
  Scheduler t(lo);
  t.add(make_seq(2, 20));
  t.add(make_seq(2, 20));
  complete_step(t, t.schedule());
  t.add(make_seq(30, 40));
  const int64_t first = t.add(make_seq(30, 48));  // longest output: admitted first
  st = t.schedule();
  ASSERT_EQ(st.chunks.size(), 3u);
  EXPECT_EQ(st.chunks[2].seq_id, first);
  EXPECT_EQ(st.chunks[2].count, 14);  // 16 - 2 decodes, past the cap of 6
  complete_step(t, st);
  t.check_invariants();
}

// A capped sequence that waits for a running prefill's blocks (prefix cache)
// is passed over like any deferred one: the exempt sequence behind it starts.
TEST(Scheduler, ADeferredCappedSequenceDoesNotHoldBackOneThatCannotWait) {
  SchedulerConfig c{4, 100, 8, 16};
  c.decode_step_tokens = 6;
  c.prefix_cache = true;
  Scheduler s(c);
  s.add(make_seq(2, 20));
  complete_step(s, s.schedule());                   // decodes next, 17 tokens still to make
  const int64_t filling = s.add(make_seq(21, 23));  // 2 to make: capped
  StepSchedule st = s.schedule();
  ASSERT_EQ(st.chunks.size(), 2u);
  EXPECT_EQ(st.chunks[1].count, 5);  // the cap of 6 less the decode
  complete_step(s, st);
  const int64_t shares = s.add(make_seq(20, 22));  // filling's prefix, not yet published: waits
  Sequence own = make_seq(20, 60);                 // 40 to make: exempt
  for (int32_t& t : own.tokens) t += 100;
  const int64_t urgent = s.add(std::move(own));
  st = s.schedule();
  EXPECT_EQ(st.deferred, 1);
  ASSERT_EQ(st.chunks.size(), 3u);
  EXPECT_EQ(st.chunks[1].seq_id, filling);
  EXPECT_EQ(st.chunks[1].count, 5);
  EXPECT_EQ(st.chunks[2].seq_id, urgent);
  EXPECT_EQ(st.chunks[2].count, 10);  // the rest of max_step_tokens
  for (const ScheduledChunk& ch : st.chunks) EXPECT_NE(ch.seq_id, shares);
  complete_step(s, st);
  s.check_invariants();
}

// Longest output first: waiting sequences by new tokens to make, most first,
// equal ones in arrival order.
TEST(Scheduler, LongestOutputFirstOrdersTheWaitingQueue) {
  SchedulerConfig c{4, 100, 1, 64};  // one running at a time: admission order is visible
  c.longest_output_first = true;
  Scheduler s(c);
  const int64_t short1 = s.add(make_seq(2, 5));
  const int64_t long1 = s.add(make_seq(2, 30));
  const int64_t mid = s.add(make_seq(10, 20));
  const int64_t long2 = s.add(make_seq(3, 31));
  const int64_t short2 = s.add(make_seq(4, 7));
  std::vector<int64_t> order;
  for (int steps = 0; s.num_running() + s.num_waiting() > 0; ++steps) {
    ASSERT_LT(steps, 200);
    const StepSchedule st = s.schedule();
    for (const ScheduledChunk& ch : st.chunks)
      if (ch.start == 0) order.push_back(ch.seq_id);
    complete_step(s, st);
    s.check_invariants();
  }
  EXPECT_EQ(order, (std::vector<int64_t>{long1, long2, mid, short1, short2}));
}

TEST(Scheduler, PreemptsNewestAndRecomputesWithoutResampling) {
  Scheduler s({2, 4, 8, 64});
  const int64_t a = s.add(make_seq(3, 9));
  const int64_t b = s.add(make_seq(3, 8));
  StepSchedule st = s.schedule();  // both admitted: 2 blocks each, cache full
  ASSERT_EQ(st.chunks.size(), 2u);
  EXPECT_EQ(s.free_blocks(), 0);
  complete_step(s, st);  // 4 tokens each
  st = s.schedule();     // decode position 3 fits the second block
  EXPECT_EQ(st.preempted, 0);
  ASSERT_EQ(st.chunks.size(), 2u);
  complete_step(s, st);  // 5 tokens each
  const int64_t c = s.add(make_seq(1, 3));
  // a's position 4 needs a third block: b, the newest, is preempted to the
  // front of the queue (ahead of c) and nobody is admitted this step.
  st = s.schedule();
  EXPECT_EQ(st.preempted, 1);
  ASSERT_EQ(st.chunks.size(), 1u);
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(s.waiting(), (std::deque<int64_t>{b, c}));
  EXPECT_TRUE(s.sequence(b).blocks.empty());
  EXPECT_EQ(s.sequence(b).num_computed, 0);
  EXPECT_EQ(s.sequence(b).tokens.size(), 5u);  // its generated tokens are kept
  s.check_invariants();
  complete_step(s, st);
  // b needs 3 blocks to come back; only 1 is free until a finishes.
  while (s.num_running() > 0 && s.running()[0] == a) {
    st = s.schedule();
    for (const ScheduledChunk& ch : st.chunks) EXPECT_EQ(ch.seq_id, a);
    complete_step(s, st);
    s.check_invariants();
  }
  st = s.schedule();
  ASSERT_GE(st.chunks.size(), 1u);
  EXPECT_EQ(st.chunks[0].seq_id, b);  // recomputed as one prefill of prompt + generated
  EXPECT_EQ(st.chunks[0].start, 0);
  EXPECT_EQ(st.chunks[0].count, 5);
  EXPECT_TRUE(st.chunks[0].samples);
}

TEST(Scheduler, SelfPreemptionWhenNewestNeedsABlock) {
  // Only the newest sequence needs a new block, so it gives its own blocks up.
  Scheduler s({2, 3, 8, 64});
  const int64_t a = s.add(make_seq(3, 7));  // 2 blocks
  const int64_t b = s.add(make_seq(2, 6));  // 1 block
  complete_step(s, s.schedule());           // a: 4 tokens, b: 3 tokens; 0 free
  StepSchedule st = s.schedule();           // a decodes pos 3 in place; b's pos 2 needs a block
  EXPECT_EQ(st.preempted, 1);
  ASSERT_EQ(st.chunks.size(), 1u);
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(s.waiting().front(), b);
  s.check_invariants();
}

// A large step admits many sequences at once: those sharing blocks that a
// running prefill has yet to compute wait a step and take them from the cache,
// while one with another prompt behind them is admitted at once.
TEST(Scheduler, WaitsForAPrefixThatARunningPrefillComputes) {
  Scheduler s({4, 100, 8, 64, true});
  const int64_t a = s.add(make_seq(20, 30));  // tokens 0..19: 5 blocks
  const int64_t b = s.add(make_seq(22, 30));  // a's 20, then 2 more
  Sequence other = make_seq(10, 30);
  for (int32_t& t : other.tokens) t += 100;
  const int64_t c = s.add(std::move(other));
  const int64_t d = s.add(make_seq(18, 30));  // a's first 16 in whole blocks
  StepSchedule st = s.schedule();
  s.check_invariants();
  ASSERT_EQ(st.chunks.size(), 2u);
  EXPECT_EQ(st.chunks[0].seq_id, a);
  EXPECT_EQ(st.chunks[0].count, 20);
  EXPECT_EQ(st.chunks[1].seq_id, c);
  EXPECT_EQ(st.deferred, 2);
  EXPECT_EQ(st.cached_tokens, 0);
  EXPECT_EQ(s.waiting(), (std::deque<int64_t>{b, d}));
  complete_step(s, st);
  st = s.schedule();
  s.check_invariants();
  ASSERT_EQ(st.chunks.size(), 4u);  // a and c decode; b and d start from a's blocks
  EXPECT_EQ(st.chunks[2].seq_id, b);
  EXPECT_EQ(st.chunks[2].start, 20);
  EXPECT_EQ(st.chunks[2].count, 2);
  EXPECT_EQ(st.chunks[3].seq_id, d);
  EXPECT_EQ(st.chunks[3].start, 16);
  EXPECT_EQ(st.chunks[3].count, 2);
  EXPECT_EQ(st.deferred, 0);
  EXPECT_EQ(st.cached_tokens, 36);
  EXPECT_EQ(s.sequence(b).blocks[4], s.sequence(a).blocks[4]);
}

// Without the cache nothing waits: all four start together.
TEST(Scheduler, NothingWaitsWithoutThePrefixCache) {
  Scheduler s({4, 100, 8, 64, false});
  for (int64_t len : {20, 22, 18}) s.add(make_seq(len, 30));
  const StepSchedule st = s.schedule();
  EXPECT_EQ(st.chunks.size(), 3u);
  EXPECT_EQ(st.deferred, 0);
}

// Random arrivals and lengths; the invariants hold after every call, and two
// schedulers fed the same calls make the same schedule with the same blocks.
// Prompts all start 0, 1, 2, ...: with the prefix cache on, they share blocks.
TEST(Scheduler, RandomLoadKeepsInvariantsAndIsDeterministic) {
  // Trials 12-17 with longest-output-first admission and small decode steps.
  for (int trial = 0; trial < 18; ++trial) {
    const int bs = 1 + trial % 4, nb = 6 + 5 * (trial % 6), max_running = 2 + trial % 6,
              budget = 3 + 7 * (trial % 6);
    const bool cache = trial < 12 ? trial >= 6 : trial % 2 == 0;
    SchedulerConfig config{bs, nb, max_running, budget, cache};
    if (trial >= 12) {
      config.longest_output_first = true;
      config.decode_step_tokens = 2 + trial % 5;
    }
    Scheduler s1(config), s2(config);
    std::mt19937 rng(trial);
    int64_t preemptions = 0, added = 0, finished = 0, cached = 0;
    for (int step = 0; step < 3000 && (added < 60 || s1.num_running() + s1.num_waiting()); ++step) {
      while (added < 60 && rng() % 3 == 0) {
        const int64_t cap = static_cast<int64_t>(nb) * bs;
        const int64_t prompt = 1 + rng() % std::max<int64_t>(1, cap - 1);
        const int64_t max_len = std::min<int64_t>(prompt + 1 + rng() % 12, cap + 1);
        s1.add(make_seq(prompt, max_len));
        s2.add(make_seq(prompt, max_len));
        ++added;
      }
      if (s1.num_running() + s1.num_waiting() == 0) continue;
      const StepSchedule st = s1.schedule();
      const StepSchedule st2 = s2.schedule();
      ASSERT_FALSE(st.chunks.empty()) << "no progress";
      s1.check_invariants();
      ASSERT_LE(st.num_tokens, budget);
      ASSERT_LE(s1.num_running(), max_running);
      ASSERT_EQ(st.chunks.size(), st2.chunks.size());
      std::set<int64_t> seen;
      int64_t tokens = 0;
      for (size_t i = 0; i < st.chunks.size(); ++i) {
        const ScheduledChunk& c = st.chunks[i];
        const Sequence& q = s1.sequence(c.seq_id);
        ASSERT_TRUE(seen.insert(c.seq_id).second) << "sequence scheduled twice";
        ASSERT_EQ(c.start, q.num_computed);
        ASSERT_GE(c.count, 1);
        ASSERT_EQ(c.samples, c.start + c.count == static_cast<int64_t>(q.tokens.size()));
        ASSERT_GE(static_cast<int64_t>(q.blocks.size()), s1.blocks_for(c.start + c.count));
        ASSERT_EQ(c.seq_id, st2.chunks[i].seq_id);
        ASSERT_EQ(c.start, st2.chunks[i].start);
        ASSERT_EQ(c.count, st2.chunks[i].count);
        ASSERT_EQ(q.blocks, s2.sequence(c.seq_id).blocks);
        tokens += c.count;
      }
      ASSERT_EQ(tokens, st.num_tokens);
      preemptions += st.preempted;
      cached += st.cached_tokens;
      finished += complete_step(s1, st).size();
      complete_step(s2, st2);
      s1.check_invariants();
    }
    EXPECT_EQ(finished, 60);
    EXPECT_EQ(s1.free_blocks(), nb);  // nothing leaked
    if (trial % 6 < 3 && trial < 12) {
      EXPECT_GT(preemptions, 0) << "trial " << trial << " never preempted";
    }
    if (cache && trial < 12) {
      EXPECT_GT(cached, 0) << "trial " << trial << " never hit the prefix cache";
    } else if (!cache) {
      EXPECT_EQ(cached, 0);
    }
  }
}

}  // namespace
}  // namespace tpinfer
