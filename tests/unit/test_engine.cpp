// The engine against a direct reference, with a fake model that sees each
// sequence's history only through the paged cache: a wrong block table, slot
// or context length changes the logits and so the tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../fake_step.hpp"
#include "base/error.hpp"
#include "base/philox.hpp"
#include "base/sampler.hpp"
#include "engine/engine.hpp"

namespace tpinfer {
namespace {

constexpr int kVocab = 64;

// Logits as a pure function of the whole context: a spread of values plus a peak
// whose place depends on a hash of every token, so sampling has choices and
// greedy decoding is not constant.
std::vector<float> context_logits(const std::vector<int32_t>& context) {
  const uint64_t h = fnv1a64(context.data(), context.size() * sizeof(int32_t));
  std::vector<float> l(kVocab);
  for (int j = 0; j < kVocab; ++j) l[j] = 3.0f * philox_uniform(philox4x32(h, 1, j)[0]);
  l[h % kVocab] += 2.0f;
  return l;
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("test forward: " + what);
}

// The fake model: a token per cache slot, written at slot_mapping and read back
// through the block tables.
struct PagedModel {
  EngineOptions options;
  std::vector<int32_t> slots;
  int64_t steps = 0;
  int64_t partial_prefill_chunks = 0;  // chunks of several tokens that did not sample
  int64_t max_seqs = 0;

  explicit PagedModel(const EngineOptions& o)
      : options(o), slots(static_cast<size_t>(o.num_blocks) * o.block_size, -1) {}

  void forward(const BatchLayout& b, std::vector<float>& logits) {
    const int bs = options.block_size;
    const int32_t n = b.num_tokens(), n_seqs = b.num_seqs(), stride = b.max_blocks_per_seq;
    ++steps;
    max_seqs = std::max<int64_t>(max_seqs, n_seqs);
    require(b.block_size == bs, "block size");
    require(n >= 1 && n <= options.max_step_tokens, "token count outside the step budget");
    require(n_seqs >= 1 && n_seqs <= options.max_running, "sequence count above max_running");
    require(b.positions.size() == b.token_ids.size() && b.slot_mapping.size() == b.token_ids.size(),
            "per-token arrays differ in length");
    require(b.query_start.size() == static_cast<size_t>(n_seqs) + 1 && b.query_start[0] == 0 &&
                b.query_start.back() == n,
            "query_start");
    require(b.block_tables.size() == static_cast<size_t>(n_seqs) * stride, "block table size");

    // A block may be in several sequences' tables (a shared prefix), but no
    // sequence writes a block another one reads.
    std::map<int32_t, int32_t> writer_of;  // block -> the sequence writing it
    for (int32_t s = 0; s < n_seqs; ++s) {
      const int32_t q0 = b.query_start[s], q1 = b.query_start[s + 1];
      require(q1 > q0, "empty sequence in batch");
      require(b.context_len[s] == b.positions[q1 - 1] + 1, "context_len is not last position + 1");
      const int32_t covered = (b.context_len[s] + bs - 1) / bs;
      require(covered <= stride, "context longer than the table row");
      for (int32_t j = 0; j < stride; ++j) {
        const int32_t blk = b.block_tables[s * stride + j];
        if (j >= covered) {
          require(blk == -1, "table row not padded with -1");
          continue;
        }
        require(blk >= 0 && blk < options.num_blocks, "block id out of range");
      }
      for (int32_t i = q0; i < q1; ++i) {
        const int32_t pos = b.positions[i];
        require(i == q0 || pos == b.positions[i - 1] + 1, "positions not consecutive");
        require(b.slot_mapping[i] == b.block_tables[s * stride + pos / bs] * bs + pos % bs,
                "slot does not match the block table");
        require(b.token_ids[i] >= 0 && b.token_ids[i] < kVocab, "token id");
        slots[b.slot_mapping[i]] = b.token_ids[i];
        const int32_t blk = b.slot_mapping[i] / bs;
        require(writer_of.emplace(blk, s).first->second == s,
                "block " + std::to_string(blk) + " written by two sequences");
      }
      const bool samples =
          std::find(b.logit_rows.begin(), b.logit_rows.end(), q1 - 1) != b.logit_rows.end();
      if (!samples && q1 - q0 > 1) ++partial_prefill_chunks;
    }

    for (int32_t s = 0; s < n_seqs; ++s)
      for (int32_t j = 0; j < (b.context_len[s] + bs - 1) / bs; ++j) {
        const auto w = writer_of.find(b.block_tables[s * stride + j]);
        require(w == writer_of.end() || w->second == s,
                "block " + std::to_string(w == writer_of.end() ? -1 : w->first) +
                    " written by one sequence and read by another");
      }

    logits.clear();
    for (size_t r = 0; r < b.logit_rows.size(); ++r) {
      const int32_t row = b.logit_rows[r];
      require(r == 0 || row > b.logit_rows[r - 1], "logit rows out of order");
      const int32_t s =
          static_cast<int32_t>(std::upper_bound(b.query_start.begin(), b.query_start.end(), row) -
                               b.query_start.begin() - 1);
      require(s >= 0 && s < n_seqs, "logit row outside the batch's sequences");
      const bool scores = b.sampling.at(r).target >= 0;
      if (scores) {
        require(row + 1 == b.query_start[s + 1] || b.token_ids[row + 1] == b.sampling[r].target,
                "a scoring row's target is not the next token");
      } else {
        require(row == b.query_start[s + 1] - 1,
                "sampling row is not the last token of its sequence");
      }
      std::vector<int32_t> context;
      const int32_t length = scores ? b.positions[row] + 1 : b.context_len[s];
      for (int32_t pos = 0; pos < length; ++pos) {
        const int32_t t = slots[b.block_tables[s * stride + pos / bs] * bs + pos % bs];
        require(t >= 0, "context reads a slot never written");
        context.push_back(t);
      }
      const std::vector<float> l = context_logits(context);
      logits.insert(logits.end(), l.begin(), l.end());
    }
  }
};

// What the engine must produce, computed one request at a time with no cache.
Result reference(const Request& r, const EngineOptions& o) {
  Result res;
  res.choices.resize(1);
  res.id_json = r.id_json;
  res.line = r.line;
  res.prompt_tokens = static_cast<int64_t>(r.prompt.size());
  std::vector<int32_t> seq = r.prompt;
  const int64_t max_len =
      std::min<int64_t>(res.prompt_tokens + r.sampling.max_new_tokens, o.max_context);
  res.choices.at(0).finish_reason = "length";
  if (r.sampling.prompt_logprobs)
    for (size_t p = 1; p < r.prompt.size(); ++p) {
      const std::vector<int32_t> before(r.prompt.begin(), r.prompt.begin() + p);
      const RowLogprobs lp =
          row_logprobs(context_logits(before), r.prompt[p], r.sampling.top_logprobs);
      res.prompt_logprobs.push_back(lp.target);
      if (r.sampling.top_logprobs > 0) res.prompt_top_logprobs.push_back(lp.top);
    }
  while (static_cast<int64_t>(seq.size()) < max_len) {
    const std::vector<float> logits = context_logits(seq);
    const SampledToken t = sample_token(logits, r.sampling, static_cast<int64_t>(seq.size()));
    seq.push_back(t.token);
    res.choices.at(0).tokens.push_back(t.token);
    if (r.sampling.logprobs) res.choices.at(0).logprobs.push_back(t.logprob);
    if (r.sampling.top_logprobs > 0)
      res.choices.at(0).top_logprobs.push_back(
          row_logprobs(logits, -1, r.sampling.top_logprobs).top);
    const auto& stop = r.sampling.stop_token_ids;
    if (std::count(o.eos_token_ids.begin(), o.eos_token_ids.end(), t.token) ||
        std::count(stop.begin(), stop.end(), t.token)) {
      res.choices.at(0).finish_reason = "stop";
      break;
    }
  }
  return res;
}

std::vector<Request> make_requests(int n, uint32_t seed, int max_prompt = 60, int max_new = 30) {
  std::mt19937 rng(seed);
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    r.id_json = "\"r" + std::to_string(i) + "\"";
    r.line = i + 1;
    const int len = 1 + static_cast<int>(rng() % max_prompt);
    for (int j = 0; j < len; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % kVocab));
    r.sampling.max_new_tokens = 1 + rng() % max_new;
    r.sampling.seed = 1000 + i;
    r.sampling.logprobs = i % 2 == 0;
    if (i % 3 == 1) {
      r.sampling.temperature = 1.0f;
      r.sampling.top_k = 8;
    } else if (i % 3 == 2) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.9f;
    }
    out.push_back(std::move(r));
  }
  return out;
}

EngineOptions options(int block_size, int num_blocks, int max_running, int max_step_tokens) {
  EngineOptions o;
  o.vocab_size = kVocab;
  o.max_context = 128;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.max_running = max_running;
  o.max_step_tokens = max_step_tokens;
  return o;
}

struct EngineRun {
  std::map<std::string, Result> results;
  EngineStats stats;
  int64_t partial_prefill_chunks = 0;
  int64_t max_seqs = 0;
};

// Adds `initial` requests, then `per_step` more before each step, in the given order.
EngineRun run_engine(const EngineOptions& o, const std::vector<Request>& requests, size_t initial,
                     size_t per_step = 0) {
  PagedModel model(o);
  Engine engine(o, testing::step_from_logits(
                       [&](const BatchLayout& b, std::vector<float>& l) { model.forward(b, l); }));
  EngineRun run;
  size_t next = 0;
  auto add_upto = [&](size_t n) {
    for (; next < std::min(n, requests.size()); ++next) engine.add(requests[next]);
  };
  add_upto(initial);
  int64_t guard = 0;
  while (engine.num_unfinished() > 0 || next < requests.size()) {
    if (engine.num_unfinished() == 0) add_upto(next + 1);
    for (Result& r : engine.step()) {
      EXPECT_TRUE(run.results.emplace(r.id_json, r).second) << r.id_json << " returned twice";
    }
    add_upto(next + per_step);
    if (++guard > 100000) throw std::runtime_error("engine does not finish");
  }
  run.stats = engine.stats();
  run.partial_prefill_chunks = model.partial_prefill_chunks;
  run.max_seqs = model.max_seqs;
  EXPECT_EQ(run.stats.steps, model.steps);
  return run;
}

void expect_matches_reference(const EngineRun& run, const std::vector<Request>& requests,
                              const EngineOptions& o, const std::string& label) {
  ASSERT_EQ(run.results.size(), requests.size()) << label;
  for (const Request& req : requests) {
    const Result want = reference(req, o);
    auto it = run.results.find(req.id_json);
    ASSERT_NE(it, run.results.end()) << label << " " << req.id_json;
    const Result& got = it->second;
    EXPECT_EQ(got.choices.at(0).tokens, want.choices.at(0).tokens) << label << " " << req.id_json;
    EXPECT_EQ(got.choices.at(0).logprobs, want.choices.at(0).logprobs)
        << label << " " << req.id_json;
    EXPECT_EQ(got.choices.at(0).finish_reason, want.choices.at(0).finish_reason)
        << label << " " << req.id_json;
    EXPECT_EQ(got.prompt_tokens, want.prompt_tokens) << label;
    EXPECT_EQ(got.prompt_logprobs, want.prompt_logprobs) << label << " " << req.id_json;
    ASSERT_EQ(got.prompt_top_logprobs.size(), want.prompt_top_logprobs.size()) << label;
    for (size_t i = 0; i < got.prompt_top_logprobs.size(); ++i)
      for (size_t k = 0; k < want.prompt_top_logprobs[i].size(); ++k) {
        EXPECT_EQ(got.prompt_top_logprobs[i].at(k).token, want.prompt_top_logprobs[i][k].token);
        EXPECT_EQ(got.prompt_top_logprobs[i].at(k).logprob, want.prompt_top_logprobs[i][k].logprob);
      }
    const auto& gt = got.choices.at(0).top_logprobs;
    const auto& wt = want.choices.at(0).top_logprobs;
    ASSERT_EQ(gt.size(), wt.size()) << label << " " << req.id_json;
    for (size_t i = 0; i < gt.size(); ++i) {
      ASSERT_EQ(gt[i].size(), wt[i].size()) << label << " " << req.id_json;
      for (size_t k = 0; k < gt[i].size(); ++k) {
        EXPECT_EQ(gt[i][k].token, wt[i][k].token) << label << " " << req.id_json;
        EXPECT_EQ(gt[i][k].logprob, wt[i][k].logprob) << label << " " << req.id_json;
      }
    }
    EXPECT_EQ(got.line, req.line) << label;
    EXPECT_TRUE(got.error.empty()) << label;
  }
}

TEST(Engine, ResultsDoNotDependOnBatching) {
  const std::vector<Request> reqs = make_requests(16, 1);
  std::vector<Request> reversed(reqs.rbegin(), reqs.rend());
  struct Case {
    std::string label;
    EngineOptions o;
    const std::vector<Request>* order;
    size_t initial, per_step;
  };
  const std::vector<Case> cases = {
      {"all at once", options(16, 4096, 64, 512), &reqs, reqs.size(), 0},
      {"3 running, 8 tokens", options(4, 4096, 3, 8), &reqs, reqs.size(), 0},
      {"block 1, 7 tokens", options(1, 4096, 5, 7), &reqs, reqs.size(), 0},
      {"1 token per step", options(7, 4096, 64, 1), &reqs, reqs.size(), 0},
      {"reversed", options(4, 4096, 6, 40), &reversed, reqs.size(), 0},
      {"staggered arrivals", options(8, 4096, 64, 64), &reqs, 2, 1},
  };
  for (const Case& c : cases) {
    const EngineRun run = run_engine(c.o, *c.order, c.initial, c.per_step);
    expect_matches_reference(run, reqs, c.o, c.label);
    EXPECT_EQ(run.stats.preemptions, 0) << c.label;
  }
  // Sampling really happened: some sampled request differs from its greedy decode.
  int differ = 0;
  const EngineOptions o = options(16, 4096, 64, 512);
  for (const Request& r : reqs) {
    Request g = r;
    g.sampling.temperature = 0.0f;
    differ += reference(g, o).choices.at(0).tokens != reference(r, o).choices.at(0).tokens;
  }
  EXPECT_GE(differ, 5);
}

// Two engines fed the same calls, as the TP ranks of a group are, build the same
// batches step for step (same blocks, same slots) and return the same results.
TEST(Engine, LockstepCopiesBuildIdenticalBatches) {
  const std::vector<Request> reqs = make_requests(12, 10);
  const EngineOptions o = options(4, 40, 6, 24);
  std::vector<BatchLayout> seen[2];
  PagedModel models[2] = {PagedModel(o), PagedModel(o)};
  auto make = [&](int i) {
    return std::make_unique<Engine>(
        o, testing::step_from_logits([&, i](const BatchLayout& b, std::vector<float>& l) {
          seen[i].push_back(b);
          models[i].forward(b, l);
        }));
  };
  auto a = make(0), b = make(1);
  size_t next = 0;
  while (next < reqs.size() || a->num_unfinished() > 0) {
    for (int i = 0; i < 2 && next < reqs.size(); ++i, ++next) {
      a->add(reqs[next]);
      b->add(reqs[next]);
    }
    const std::vector<Result> ra = a->step(), rb = b->step();
    ASSERT_EQ(ra.size(), rb.size());
    for (size_t i = 0; i < ra.size(); ++i)
      EXPECT_EQ(ra[i].choices.at(0).tokens, rb[i].choices.at(0).tokens);
    ASSERT_EQ(seen[0].size(), seen[1].size());
    const BatchLayout &x = seen[0].back(), &y = seen[1].back();
    ASSERT_EQ(x.token_ids, y.token_ids);
    ASSERT_EQ(x.positions, y.positions);
    ASSERT_EQ(x.slot_mapping, y.slot_mapping);
    ASSERT_EQ(x.query_start, y.query_start);
    ASSERT_EQ(x.context_len, y.context_len);
    ASSERT_EQ(x.block_tables, y.block_tables);
    ASSERT_EQ(x.logit_rows, y.logit_rows);
  }
  EXPECT_EQ(a->stats().preemptions, b->stats().preemptions);
  EXPECT_GT(a->stats().preemptions, 0);
}

TEST(Engine, StatsCountTokensExactly) {
  const std::vector<Request> reqs = make_requests(10, 2);
  const EngineOptions o = options(4, 4096, 4, 16);
  const EngineRun run = run_engine(o, reqs, reqs.size());
  int64_t prompt = 0, generated = 0;
  for (const auto& [id, r] : run.results) {
    prompt += r.prompt_tokens;
    generated += static_cast<int64_t>(r.choices.at(0).tokens.size());
  }
  EXPECT_EQ(run.stats.prompt_tokens, prompt);
  EXPECT_EQ(run.stats.generated_tokens, generated);
  // Without preemption each token runs once, except each sequence's final one.
  EXPECT_EQ(run.stats.computed_tokens, prompt + generated - static_cast<int64_t>(reqs.size()));
  EXPECT_EQ(run.stats.preemptions, 0);
  EXPECT_LE(run.max_seqs, 4);
  EXPECT_GT(run.partial_prefill_chunks, 0);
}

TEST(Engine, TinyCachePreemptsAndGivesSameTokens) {
  const std::vector<Request> reqs = make_requests(16, 3);
  // The longest request caches at most 60 + 30 - 1 tokens: 23 blocks of 4.
  for (int num_blocks : {23, 30, 45}) {
    EngineOptions o = options(4, num_blocks, 16, 64);
    o.max_context = 256;  // room for the whole-cache request at the end
    PagedModel model(o);
    Engine engine(o, testing::step_from_logits([&](const BatchLayout& b, std::vector<float>& l) {
                    model.forward(b, l);
                  }));
    for (const Request& r : reqs) engine.add(r);
    EXPECT_EQ(engine.num_unfinished(), 16);
    std::map<std::string, Result> results;
    while (engine.num_unfinished() > 0)
      for (Result& r : engine.step()) results.emplace(r.id_json, r);
    EngineRun run{results, engine.stats(), 0, 0};
    const std::string label = "num_blocks " + std::to_string(num_blocks);
    expect_matches_reference(run, reqs, o, label);
    EXPECT_GT(run.stats.preemptions, 0) << label;
    int64_t prompt = 0, generated = 0;
    for (const auto& [id, r] : results) {
      prompt += r.prompt_tokens;
      generated += static_cast<int64_t>(r.choices.at(0).tokens.size());
    }
    EXPECT_EQ(run.stats.generated_tokens, generated) << "a generated token was re-sampled";
    EXPECT_GT(run.stats.computed_tokens, prompt + generated - 16) << "nothing recomputed";

    // Every block came back: a request needing the whole cache still runs.
    Request whole;
    whole.id_json = "\"whole\"";
    for (int i = 0; i < num_blocks * 4 - 1; ++i) whole.prompt.push_back(i % kVocab);
    whole.sampling.max_new_tokens = 2;
    engine.add(whole);
    std::vector<Result> last;
    for (int i = 0; i < 100 && engine.num_unfinished() > 0; ++i) last = engine.step();
    ASSERT_EQ(last.size(), 1u) << label;
    EXPECT_EQ(last[0].choices.at(0).tokens, reference(whole, o).choices.at(0).tokens) << label;
  }
}

TEST(Engine, ChunkedPrefillOfLongPrompts) {
  std::vector<Request> reqs = make_requests(6, 4, 200, 10);
  EngineOptions o = options(16, 4096, 8, 16);
  o.max_context = 256;
  const EngineRun run = run_engine(o, reqs, reqs.size());
  expect_matches_reference(run, reqs, o, "budget 16");
  EXPECT_GT(run.partial_prefill_chunks, 10);
  // The same with one step per prompt.
  o.max_step_tokens = 4096;
  const EngineRun whole = run_engine(o, reqs, reqs.size());
  expect_matches_reference(whole, reqs, o, "budget 4096");
  EXPECT_EQ(whole.partial_prefill_chunks, 0);
  EXPECT_LT(whole.stats.steps, run.stats.steps);
}

TEST(Engine, StopsOnEosAndStopTokensIncludingThem) {
  std::vector<Request> reqs = make_requests(4, 5);
  for (Request& r : reqs) r.sampling.max_new_tokens = 40;
  EngineOptions o = options(4, 4096, 8, 64);
  const Result free_run = reference(reqs[0], o);
  ASSERT_EQ(free_run.choices.at(0).tokens.size(), 40u);
  // A token whose first occurrence is at index k >= 3: stopping on it keeps k + 1 tokens.
  size_t k = 3;
  while (std::find(free_run.choices.at(0).tokens.begin(), free_run.choices.at(0).tokens.begin() + k,
                   free_run.choices.at(0).tokens[k]) != free_run.choices.at(0).tokens.begin() + k)
    ++k;
  ASSERT_LT(k, 40u);
  const int32_t stop = free_run.choices.at(0).tokens[k];
  const std::vector<int32_t> prefix(free_run.choices.at(0).tokens.begin(),
                                    free_run.choices.at(0).tokens.begin() + k + 1);

  // As a request stop token: only that request stops early.
  std::vector<Request> with_stop = reqs;
  with_stop[0].sampling.stop_token_ids = {99, stop};
  EngineRun run = run_engine(o, with_stop, with_stop.size());
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).tokens, prefix);
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).finish_reason, "stop");
  expect_matches_reference(run, with_stop, o, "stop token");

  // As EOS: applies to every request.
  o.eos_token_ids = {stop, 98};
  run = run_engine(o, reqs, reqs.size());
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).tokens, prefix);
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).finish_reason, "stop");
  expect_matches_reference(run, reqs, o, "eos");

  // ignore_eos: the request runs to max_new_tokens through the EOS token.
  // The other requests still honour EOS.
  const EngineRun with_eos = run;
  std::vector<Request> ignoring = reqs;
  ignoring[0].sampling.ignore_eos = true;
  run = run_engine(o, ignoring, ignoring.size());
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).tokens, free_run.choices.at(0).tokens);
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).finish_reason, "length");
  for (size_t i = 1; i < reqs.size(); ++i)
    EXPECT_EQ(run.results.at(reqs[i].id_json).choices.at(0).tokens,
              with_eos.results.at(reqs[i].id_json).choices.at(0).tokens);
}

TEST(Engine, StopsAtMaxNewTokensAndMaxContext) {
  EngineOptions o = options(4, 4096, 8, 64);
  o.max_context = 32;
  std::vector<Request> reqs = make_requests(4, 6, 20, 1);
  reqs[0].sampling.max_new_tokens = 5;
  reqs[1].prompt.resize(20);
  reqs[1].sampling.max_new_tokens = 100;  // the context allows 12 more
  reqs[2].sampling.max_new_tokens = 0;    // nothing to generate
  reqs[3].prompt.assign(32, 3);           // the prompt fills the context
  const EngineRun run = run_engine(o, reqs, reqs.size());
  expect_matches_reference(run, reqs, o, "limits");
  EXPECT_EQ(run.results.at(reqs[0].id_json).choices.at(0).tokens.size(), 5u);
  EXPECT_EQ(run.results.at(reqs[1].id_json).choices.at(0).tokens.size(), 12u);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(run.results.at(reqs[i].id_json).choices.at(0).finish_reason, "length");
  EXPECT_TRUE(run.results.at(reqs[2].id_json).choices.at(0).tokens.empty());
  EXPECT_EQ(run.results.at(reqs[3].id_json).prompt_tokens, 32);

  // Only requests with nothing to generate: returned without calling forward.
  int calls = 0;
  Engine engine(o, [&](const BatchLayout&, StepTokens&) { ++calls; });
  engine.add(reqs[2]);
  EXPECT_EQ(engine.num_unfinished(), 1);
  const std::vector<Result> done = engine.step();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].choices.at(0).finish_reason, "length");
  EXPECT_EQ(engine.num_unfinished(), 0);
  EXPECT_EQ(calls, 0);
}

TEST(Engine, RejectsBadRequestsAndStaysUsable) {
  EngineOptions o = options(4, 8, 8, 64);  // 32 cached tokens at most
  o.max_context = 64;
  PagedModel model(o);
  Engine engine(o, testing::step_from_logits(
                       [&](const BatchLayout& b, std::vector<float>& l) { model.forward(b, l); }));
  Request good = make_requests(1, 7, 10, 5)[0];
  auto bad = [&](auto change) {
    Request r = good;
    change(r);
    return r;
  };
  EXPECT_THROW(engine.add(bad([](Request& r) { r.prompt.clear(); })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.prompt.assign(65, 1); })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.prompt[0] = kVocab; })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.prompt[0] = -1; })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.sampling.max_new_tokens = -1; })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.sampling.temperature = -1.0f; })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.sampling.top_p = 0.0f; })), InputError);
  EXPECT_THROW(engine.add(bad([](Request& r) { r.sampling.top_k = -2; })), InputError);
  // Fits the context but never the cache: 30 + 10 - 1 cached tokens > 32.
  EXPECT_THROW(engine.add(bad([](Request& r) {
    r.prompt.assign(30, 1);
    r.sampling.max_new_tokens = 10;
  })),
               InputError);
  EXPECT_EQ(engine.num_unfinished(), 0);
  // Exactly the whole cache is fine.
  Request edge = bad([](Request& r) {
    r.id_json = "\"edge\"";
    r.prompt.assign(30, 1);
    r.sampling.max_new_tokens = 3;
  });
  engine.add(good);
  engine.add(edge);
  EXPECT_EQ(engine.num_unfinished(), 2);
  std::map<std::string, Result> results;
  while (engine.num_unfinished() > 0)
    for (Result& r : engine.step()) results.emplace(r.id_json, r);
  EngineRun run{results, engine.stats(), 0, 0};
  expect_matches_reference(run, {good, edge}, o, "after rejections");
  EXPECT_EQ(engine.stats().prompt_tokens, static_cast<int64_t>(good.prompt.size()) + 30);
}

TEST(Engine, RejectsBadOptions) {
  const StepFn forward = [](const BatchLayout&, StepTokens&) {};
  EXPECT_THROW(Engine(options(0, 8, 8, 8), forward), UsageError);
  EXPECT_THROW(Engine(options(4, 0, 8, 8), forward), UsageError);
  EXPECT_THROW(Engine(options(4, 8, 0, 8), forward), UsageError);
  EXPECT_THROW(Engine(options(4, 8, 8, 0), forward), UsageError);
  EngineOptions o = options(4, 8, 8, 8);
  o.vocab_size = 0;
  EXPECT_THROW(Engine(o, forward), UsageError);
  EXPECT_THROW(Engine(options(4, 8, 8, 8), StepFn{}), InternalError);
}

TEST(Engine, AStepReturningTheWrongTokenCountIsAnError) {
  const EngineOptions o = options(4, 64, 8, 64);
  Engine engine(o, [](const BatchLayout& b, StepTokens& out) {
    out.drawn.assign(b.logit_rows.size() + 1, {});
  });
  engine.add(make_requests(1, 8)[0]);
  EXPECT_THROW(engine.step(), InternalError);
}

// Requests over a few shared preambles (a few-shot file), with distinct tails.
std::vector<Request> shared_prefix_requests(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> preambles(3);
  for (auto& p : preambles)
    for (int j = 0; j < 37; ++j) p.push_back(static_cast<int32_t>(rng() % kVocab));
  std::vector<Request> out = make_requests(n, seed + 1, 12, 12);
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<int32_t> prompt = preambles[rng() % preambles.size()];
    prompt.insert(prompt.end(), out[i].prompt.begin(), out[i].prompt.end());
    out[i].prompt = std::move(prompt);
  }
  return out;
}

TEST(Engine, PrefixCacheGivesTheSameTokensAndComputesSharedPreamblesOnce) {
  const std::vector<Request> reqs = shared_prefix_requests(24, 5);
  struct Case {
    std::string label;
    EngineOptions o;
    size_t initial, per_step;
  };
  EngineOptions off = options(4, 4096, 8, 64);
  off.prefix_cache = false;
  const EngineRun without = run_engine(off, reqs, reqs.size());
  expect_matches_reference(without, reqs, off, "cache off");
  EXPECT_EQ(without.stats.cached_tokens, 0);
  const std::vector<Case> cases = {
      {"roomy", options(4, 4096, 8, 64), reqs.size(), 0},
      {"one at a time", options(4, 4096, 1, 64), reqs.size(), 0},
      {"block 1", options(1, 4096, 8, 16), 2, 1},
      // Evictions and preemptions: the cache holds about three sequences.
      {"tight", options(4, 40, 8, 64), reqs.size(), 0},
  };
  for (const Case& c : cases) {
    const EngineRun run = run_engine(c.o, reqs, c.initial, c.per_step);
    expect_matches_reference(run, reqs, c.o, c.label);
    EXPECT_GT(run.stats.cached_tokens, 0) << c.label;
    EXPECT_LT(run.stats.computed_tokens, without.stats.computed_tokens) << c.label;
    if (c.label == "tight") {
      EXPECT_GT(run.stats.evicted_blocks, 0);
      EXPECT_GT(run.stats.preemptions, 0);
    }
  }
}

TEST(Engine, NCompletionsEqualSeparateRequestsWithDerivedSeedsAndSharePrompt) {
  std::vector<Request> reqs = make_requests(6, 8, 50, 20);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].n = 1 + static_cast<int>(i % 4);
    reqs[i].sampling.temperature = i == 0 ? 0.0f : 0.9f;
  }
  for (const EngineOptions& o : {options(4, 4096, 8, 64), options(4, 60, 3, 16)}) {
    const EngineRun run = run_engine(o, reqs, reqs.size());
    ASSERT_EQ(run.results.size(), reqs.size());
    int64_t shared_prompt = 0;
    for (const Request& r : reqs) {
      const Result& got = run.results.at(r.id_json);
      ASSERT_EQ(got.choices.size(), static_cast<size_t>(r.n)) << r.id_json;
      for (int i = 0; i < r.n; ++i) {
        Request one = r;
        one.n = 1;
        one.sampling.seed = completion_seed(r.sampling.seed, i);
        const Result want = reference(one, o);
        EXPECT_EQ(got.choices[i].tokens, want.choices[0].tokens) << r.id_json << " #" << i;
        EXPECT_EQ(got.choices[i].logprobs, want.choices[0].logprobs) << r.id_json << " #" << i;
        EXPECT_EQ(got.choices[i].finish_reason, want.choices[0].finish_reason);
      }
      shared_prompt += (r.n - 1) * ((static_cast<int64_t>(r.prompt.size()) - 1) / 4 * 4);
      EXPECT_EQ(got.prompt_tokens, static_cast<int64_t>(r.prompt.size()));
    }
    // The later completions found the prompt's full blocks (the roomy cache
    // keeps them all).
    if (o.num_blocks == 4096) {
      EXPECT_GE(run.stats.cached_tokens, shared_prompt);
    }
  }
  // Sampled completions of one prompt differ from each other.
  const EngineRun run = run_engine(options(4, 4096, 8, 64), reqs, reqs.size());
  const Result& four = run.results.at(reqs[3].id_json);
  ASSERT_EQ(four.choices.size(), 4u);
  EXPECT_NE(four.choices[0].tokens, four.choices[1].tokens);
  // n = 0 and n past the limit are refused.
  Engine e(options(4, 64, 8, 64), [](const BatchLayout&, StepTokens&) {});
  Request bad = reqs[0];
  bad.n = 0;
  EXPECT_THROW(e.add(bad), InputError);
  bad.n = kMaxCompletions + 1;
  EXPECT_THROW(e.add(bad), InputError);
}

// Prompt logprobs (every prompt position, through chunked prefill, preemption
// and a recompute that must not score twice) and top logprobs, as one request
// at a time would give them; prompt scoring alone (nothing generated) too.
TEST(Engine, PromptLogprobsAndTopLogprobsDoNotDependOnBatching) {
  std::vector<Request> reqs = shared_prefix_requests(14, 9);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].sampling.prompt_logprobs = i % 2 == 0;
    reqs[i].sampling.top_logprobs = static_cast<int>(i % 4) * 3;
    if (reqs[i].sampling.top_logprobs > 0) reqs[i].sampling.logprobs = true;
  }
  reqs[4].sampling.max_new_tokens = 0;  // scoring only
  const std::vector<EngineOptions> layouts = {options(4, 4096, 8, 64), options(4, 4096, 3, 5),
                                              options(2, 48, 8, 16), options(1, 4096, 2, 3)};
  for (const EngineOptions& o : layouts) {
    const EngineRun run = run_engine(o, reqs, reqs.size());
    expect_matches_reference(run, reqs, o,
                             "block " + std::to_string(o.block_size) + ", " +
                                 std::to_string(o.num_blocks) + " blocks, " +
                                 std::to_string(o.max_step_tokens) + " tokens a step");
  }
  const EngineRun run = run_engine(layouts[2], reqs, reqs.size());
  EXPECT_GT(run.stats.preemptions, 0);
  const Result& scored = run.results.at(reqs[4].id_json);
  EXPECT_TRUE(scored.choices.at(0).tokens.empty());
  EXPECT_EQ(scored.prompt_logprobs.size(), reqs[4].prompt.size() - 1);
  EXPECT_EQ(run.results.at(reqs[3].id_json).choices.at(0).top_logprobs.at(0).size(), 9u);
}

TEST(Engine, NumWaitingCountsQueuedRequests) {
  const EngineOptions o = options(4, 4096, 2, 512);
  PagedModel model(o);
  Engine engine(o, testing::step_from_logits(
                       [&](const BatchLayout& b, std::vector<float>& l) { model.forward(b, l); }));
  for (Request r : make_requests(5, 9)) {
    r.sampling.max_new_tokens = 10;
    engine.add(r);
  }
  EXPECT_EQ(engine.num_waiting(), 5);
  engine.step();
  EXPECT_EQ(engine.num_waiting(), 3);  // two admitted (max_running)
  EXPECT_EQ(engine.num_unfinished(), 5);
}

}  // namespace
}  // namespace tpinfer
