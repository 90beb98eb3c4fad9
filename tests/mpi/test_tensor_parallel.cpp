// Under mpirun -np 2 and 4: the forward pass at TP=2 and TP=4 (and DP x TP
// splits of the world) gives the logits of TP=1 within fp32 reduction-order
// tolerance, greedy generation gives the same tokens, and the collectives sum
// and gather exactly.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "../fake_step.hpp"
#include "../mpi_world.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/error.hpp"
#include "base/sampler.hpp"
#include "dist/mpi_collectives.hpp"
#include "dist/world.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

using test::world_rank;
using test::world_size;

ModelConfig config_gqa_llama3() {
  return config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
    "vocab_size": 203, "max_position_embeddings": 128, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "eos_token_id": 2,
    "torch_dtype": "float32"})"));
}

ModelConfig config_qwen2_replicated_kv() {
  return config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
    "vocab_size": 130, "max_position_embeddings": 128, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "eos_token_id": [2, 3],
    "torch_dtype": "float32"})"));
}

ModelConfig config_mha_linear_rope() {
  return config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 48, "intermediate_size": 80,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
    "vocab_size": 97, "max_position_embeddings": 128, "rope_theta": 10000.0,
    "rope_scaling": {"type": "linear", "factor": 2.0},
    "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "torch_dtype": "float32"})"));
}

constexpr uint64_t kSeed = 11;

// A model at TP size `tp` over `comm` (whose size is tp), random weights.
struct Replica {
  std::unique_ptr<Backend> backend;
  Model model;
  Replica(const ModelConfig& c, MPI_Comm comm, int blocks, int block_size) {
    int r = 0, n = 1;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &n);
    backend = make_cpu_backend(mpi_collectives(comm), 1);
    model = load_model(*backend, c, r, n,
                       [&](const TensorShard& s) { return random_tensor_values(c, s, kSeed); });
    allocate_kv_cache(model, *backend, blocks, block_size);
    allocate_workspace(model, *backend, 64, 8);
  }
};

// Two steps over three sequences: a mixed prefill step, then decodes plus a
// second prefill chunk. Blocks are handed out in a scrambled order.
std::vector<BatchLayout> two_steps(int block_size) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 5, 9, 33, 17}, {4, 8, 15, 16, 23, 42, 7, 7, 90, 91, 92, 5, 6, 7, 8, 9, 10}, {77}};
  const int stride = 8;
  std::vector<int32_t> tables = {5,  0,  7,  3,  -1, -1, -1, -1,  //
                                 1,  6,  2,  4,  8,  9,  -1, -1,  //
                                 10, 11, -1, -1, -1, -1, -1, -1};
  auto slot = [&](int s, int pos) {
    return tables[s * stride + pos / block_size] * block_size + pos % block_size;
  };
  BatchLayout a;
  a.block_size = block_size;
  a.max_blocks_per_seq = stride;
  a.block_tables = tables;
  a.query_start = {0};
  // step 1: seq0 whole prompt, seq1 its first 10 tokens (a chunk), seq2 whole prompt
  const int first_len[3] = {5, 10, 1};
  for (int s = 0; s < 3; ++s) {
    for (int p = 0; p < first_len[s]; ++p) {
      a.token_ids.push_back(prompts[s][p]);
      a.positions.push_back(p);
      a.slot_mapping.push_back(slot(s, p));
    }
    a.query_start.push_back(a.num_tokens());
    a.context_len.push_back(first_len[s]);
  }
  a.logit_rows = {4, 15};  // seq0 and seq2 sample; seq1 is mid-prefill
  BatchLayout b = a;
  b.token_ids.clear(), b.positions.clear(), b.slot_mapping.clear();
  b.query_start = {0};
  b.context_len.clear();
  b.logit_rows.clear();
  // step 2: seq0 decodes token 50 at position 5; seq1 finishes its prompt; seq2 decodes 60.
  auto add = [&](int s, std::vector<int32_t> toks, int start) {
    for (size_t i = 0; i < toks.size(); ++i) {
      b.token_ids.push_back(toks[i]);
      b.positions.push_back(start + static_cast<int>(i));
      b.slot_mapping.push_back(slot(s, start + static_cast<int>(i)));
    }
    b.query_start.push_back(b.num_tokens());
    b.context_len.push_back(start + static_cast<int>(toks.size()));
    b.logit_rows.push_back(b.num_tokens() - 1);
  };
  add(0, {50}, 5);
  add(1, std::vector<int32_t>(prompts[1].begin() + 10, prompts[1].end()), 10);
  add(2, {60}, 1);
  return {a, b};
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1e-6, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(a[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return diff / scale;
}

class TensorParallel : public ::testing::TestWithParam<int> {};

void check_forward_matches_tp1(const ModelConfig& c, int tp) {
  if (world_size() % tp != 0) GTEST_SKIP() << "world size not a multiple of " << tp;
  const int block_size = 4;
  Replica single(c, MPI_COMM_SELF, 12, block_size);
  MPI_Comm group;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() / tp, world_rank(), &group);
  Comm owned(group);
  Replica sharded(c, group, 12, block_size);
  for (const auto& step : two_steps(block_size)) {
    std::vector<float> want, got;
    forward(single.model, *single.backend, step, want);
    forward(sharded.model, *sharded.backend, step, got);
    ASSERT_EQ(want.size(), step.logit_rows.size() * c.vocab_size);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_LT(max_rel_diff(want, got), 2e-5) << "tp " << tp;
    // Logits are not degenerate (a zero model would pass the comparison).
    double spread = 0;
    for (float v : want) spread = std::max(spread, std::fabs(static_cast<double>(v - want[0])));
    EXPECT_GT(spread, 1e-3);
  }
}

TEST_P(TensorParallel, GqaLlama3LogitsMatchTp1) {
  check_forward_matches_tp1(config_gqa_llama3(), GetParam());
}
TEST_P(TensorParallel, Qwen2ReplicatedKvLogitsMatchTp1) {
  check_forward_matches_tp1(config_qwen2_replicated_kv(), GetParam());
}
TEST_P(TensorParallel, MhaLinearRopeLogitsMatchTp1) {
  check_forward_matches_tp1(config_mha_linear_rope(), GetParam());
}

// Greedy generation through the engine: same tokens at every TP size.
TEST_P(TensorParallel, GreedyTokensMatchTp1) {
  const int tp = GetParam();
  if (world_size() % tp != 0) GTEST_SKIP();
  const ModelConfig c = config_gqa_llama3();
  auto generate = [&](MPI_Comm comm) {
    Replica rep(c, comm, 64, 4);
    const EngineOptions eo = testing::engine_options_for(c, 4, 64, 8, 64);
    Engine engine(eo, [&](const BatchLayout& b, StepTokens& out) {
      step_tokens(rep.model, *rep.backend, b, out);
    });
    for (int i = 0; i < 6; ++i) {
      Request r;
      r.id_json = std::to_string(i);
      for (int t = 0; t < 3 + 7 * i; ++t) r.prompt.push_back((i * 31 + t * 7) % 200 + 3);
      r.sampling.max_new_tokens = 12;
      engine.add(r);
    }
    std::map<std::string, std::vector<int32_t>> out;
    while (engine.num_unfinished() > 0)
      for (auto& res : engine.step()) out[res.id_json] = res.choices.at(0).tokens;
    return out;
  };
  MPI_Comm group;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() / tp, world_rank(), &group);
  Comm owned(group);
  const auto want = generate(MPI_COMM_SELF);
  const auto got = generate(group);
  ASSERT_EQ(want.size(), 6u);
  EXPECT_EQ(want, got);
}

INSTANTIATE_TEST_SUITE_P(Sizes, TensorParallel, ::testing::Values(2, 4),
                         [](const auto& info) { return "tp" + std::to_string(info.param); });

TEST(Collectives, AllReduceAndAllGatherOverTheWorld) {
  const int n = world_size(), me = world_rank();
  auto backend = make_cpu_backend(mpi_collectives(MPI_COMM_WORLD), 1);
  Tensor x = backend->alloc({2, 3}, DType::f32);
  std::vector<float> host(6);
  for (int i = 0; i < 6; ++i) host[i] = static_cast<float>((me + 1) * (i + 1));
  backend->upload(x, host.data());
  backend->all_reduce_sum(x);
  backend->download(x, host.data());
  const float ranks_sum = n * (n + 1) / 2.0f;
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(host[i], ranks_sum * (i + 1));

  Tensor local = backend->alloc({3}, DType::f32);
  const std::vector<float> mine = {float(me), float(me * 10), float(me * 100)};
  backend->upload(local, mine.data());
  Tensor all = backend->alloc({n, 3}, DType::f32);
  backend->all_gather(local, all);
  std::vector<float> gathered(3 * n);
  backend->download(all, gathered.data());
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(gathered[3 * r], r);
    EXPECT_EQ(gathered[3 * r + 2], r * 100);
  }
}

TEST(World, SplitsIntoDataAndTensorParallelGroups) {
  const int n = world_size();
  World w = make_world(2);
  EXPECT_EQ(w.size, n);
  EXPECT_EQ(w.dp, n / 2);
  EXPECT_EQ(w.tp_rank, w.rank % 2);
  EXPECT_EQ(w.dp_rank, w.rank / 2);
  EXPECT_EQ(w.tp_comm.size(), 2);
  // The TP group is the consecutive pair: summing world ranks over it proves it.
  float v = static_cast<float>(w.rank);
  w.tp_group().all_reduce_sum(&v, 1);
  EXPECT_EQ(v, static_cast<float>(4 * w.dp_rank + 1));
  EXPECT_THROW(make_world(n + 1), UsageError);
}

TEST(World, AgreeOnGivesEveryRankTheFirstFailure) {
  const int me = world_rank();
  try {
    agree_on(MPI_COMM_WORLD, [&] {
      if (me == 1) throw ModelError("rank one failed");
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "rank one failed");
    EXPECT_EQ(e.exit_code, kExitUsage);
    EXPECT_TRUE(e.agreed);
  }
  EXPECT_NO_THROW(agree_on(MPI_COMM_WORLD, [] {}));
}

// Every rank reads its own hyperslabs of one HDF5 file at TP = world size.
TEST(WeightFile, ShardedLoadFromOneFileMatchesRandomValues) {
  const ModelConfig c = config_gqa_llama3();
  const int n = world_size(), me = world_rank();
  const std::string path = std::string(TPINFER_TEST_TMP) + "/mpi-weights.h5";
  if (me == 0) write_random_model(c, path, kSeed);
  MPI_Barrier(MPI_COMM_WORLD);
  WeightReader reader(path);
  reader.validate(n);
  for (const auto& spec : expected_tensors(c)) {
    const TensorShard s = shard_of(c, spec, me, n);
    EXPECT_EQ(reader.read(s), random_tensor_values(c, s, kSeed)) << spec.name;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {
namespace {

// The greedy fast path (argmax per vocab shard, gathered pairs) gives the
// argmax of the whole gathered row; a row drawn from the gathered vocab
// (logprobs asked) gives the same token and the log-softmax of the whole row.
TEST_P(TensorParallel, GreedyTokensEqualTheArgmaxOfWholeRows) {
  const int tp = GetParam();
  if (world_size() % tp != 0) GTEST_SKIP();
  MPI_Comm group;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() / tp, world_rank(), &group);
  Comm owned(group);
  for (const ModelConfig& c : {config_gqa_llama3(), config_qwen2_replicated_kv()}) {
    Replica whole(c, group, 12, 4), fast(c, group, 12, 4);
    for (BatchLayout step : two_steps(4)) {
      std::vector<float> rows;
      forward(whole.model, *whole.backend, step, rows);
      step.full_logits.assign(step.logit_rows.size(), 0);
      step.full_logits.back() = 1;
      step.sampling.assign(step.logit_rows.size(), RowSampling{});
      step.sampling.back().logprobs = true;
      StepTokens out;
      step_tokens(fast.model, *fast.backend, step, out);
      ASSERT_EQ(out.drawn.size(), step.logit_rows.size());
      for (size_t j = 0; j < out.drawn.size(); ++j) {
        const float* row = rows.data() + j * c.vocab_size;
        const auto best = std::max_element(row, row + c.vocab_size) - row;
        EXPECT_EQ(out.drawn[j].token, best) << "row " << j;
      }
      SamplingParams with_logprob;
      with_logprob.logprobs = true;
      const SampledToken last = sample_token(
          std::span<const float>(rows.data() + rows.size() - c.vocab_size, c.vocab_size),
          with_logprob, 0);
      EXPECT_FLOAT_EQ(out.drawn.back().logprob, last.logprob);
    }
  }
}

}  // namespace
}  // namespace tpinfer
