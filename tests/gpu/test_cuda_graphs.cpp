// Decode steps replayed from CUDA graphs against the same steps launched op by
// op: the logits must be bit-identical (same kernels, same arguments), while
// the contexts grow across attention-split boundaries and sequences finish.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "gpu_test_util.hpp"
#include "model/model.hpp"
#include "model_compare.hpp"

namespace tpinfer::gputest {
namespace {

std::unique_ptr<Backend> cuda_backend(bool graphs) {
  CudaBackendOptions o;
  o.memory_fraction = 0.05;
  o.graphs = graphs;
  return make_cuda_backend(MPI_COMM_SELF, o);
}

// The same step on both backends: the logits (whole rows, then the greedy
// path's device argmax) must be bit-identical.
void expect_same_step(Model& me, Backend& eager, Model& mg, Backend& graphed, const BatchLayout& b,
                      const std::string& what) {
  std::vector<float> want, got;
  forward(me, eager, b, want);
  forward(mg, graphed, b, got);
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(got[i], want[i]) << what << ": logit " << i << " differs";
  BatchLayout greedy = b;
  greedy.full_logits.assign(b.logit_rows.size(), 0);
  greedy.sampling.assign(b.logit_rows.size(), RowSampling{});
  StepTokens want_g, got_g;
  step_tokens(me, eager, greedy, want_g);
  step_tokens(mg, graphed, greedy, got_g);
  ASSERT_EQ(got_g.drawn.size(), want_g.drawn.size()) << what;
  for (size_t j = 0; j < want_g.drawn.size(); ++j)
    ASSERT_EQ(got_g.drawn[j].token, want_g.drawn[j].token) << what << ": row " << j;
}

// A decode-shaped step (one token a sequence) of sequences `first..first+count`
// of `paging`, each at its current length `len[s]`, which then grows by one.
BatchLayout decode_step(const Paging& paging, int first, int count, std::vector<int>& len) {
  std::vector<SeqSpec> decode;
  std::vector<int32_t> tables;
  for (int s = first; s < first + count; ++s) {
    decode.push_back({len[s], 1});
    tables.insert(tables.end(), paging.tables.begin() + s * paging.max_blocks,
                  paging.tables.begin() + (s + 1) * paging.max_blocks);
  }
  BatchLayout b = make_batch(decode, paging);
  b.block_tables = tables;
  for (int i = 0; i < count; ++i) b.slot_mapping[i] = paging.slot(first + i, decode[i].start);
  for (int s = first; s < first + count; ++s) ++len[s];
  return b;
}

class CudaGraphs : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaGraphs, ReplayedDecodeStepsMatchEagerOnesBitForBit) {
  SKIP_WITHOUT_GPU();
  const ModelConfig c = test_config(GetParam());
  const int block_size = 16;
  // Four sequences: prompts of 3, 250, 500 and 1000 tokens, then decode steps.
  // The 250-token one crosses 256 keys (another split count, another graph);
  // the shortest finishes after 20 steps, which changes the batch size.
  std::vector<SeqSpec> seqs = {{0, 3}, {0, 250}, {0, 500}, {0, 1000}};
  const int steps = 40;
  std::vector<SeqSpec> final_len = seqs;
  for (auto& s : final_len) s.n_query += steps;
  std::mt19937_64 rng(5);
  const Paging paging = make_paging(final_len, block_size, rng);

  auto eager = cuda_backend(false), graphed = cuda_backend(true);
  Model me = load_test_model(*eager, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  Model mg = load_test_model(*graphed, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  auto step_both = [&](const BatchLayout& b, const std::string& what) {
    expect_same_step(me, *eager, mg, *graphed, b, what);
  };
  // Prefill each sequence alone, in chunks the workspace holds (never recorded).
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int start = 0; start < seqs[s].n_query; start += 200) {
      const SeqSpec chunk{start, std::min(200, seqs[s].n_query - start)};
      BatchLayout b = make_batch({chunk}, paging);
      // make_batch numbers sequences from 0: give this one its own block table row.
      b.block_tables.assign(paging.tables.begin() + s * paging.max_blocks,
                            paging.tables.begin() + (s + 1) * paging.max_blocks);
      for (int q = 0; q < chunk.n_query; ++q)
        b.slot_mapping[q] = paging.slot(static_cast<int>(s), chunk.start + q);
      step_both(b, "prefill " + std::to_string(s) + " from " + std::to_string(start));
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_EQ(cuda_graph_stats(*graphed).recorded, 0) << "a prefill was recorded";
  std::vector<int> len = {3, 250, 500, 1000};
  for (int t = 0; t < steps; ++t) {
    const int live = t < 20 ? 4 : 3;  // sequence 0 finishes after 20 steps
    step_both(decode_step(paging, 4 - live, live, len), "decode step " + std::to_string(t));
    if (HasFatalFailure()) return;
  }
  const CudaGraphStats st = cuda_graph_stats(*graphed);
  std::cout << "[ graphs   ] " << st.recorded << " recorded, " << st.replayed << " replayed\n";
  // Batch 4, batch 3, and (tensor-core attention) the split change at 256 keys.
  EXPECT_GE(st.recorded, 2);
  EXPECT_EQ(st.recorded + st.replayed, 2 * steps);  // full-row and greedy forwards
  EXPECT_EQ(cuda_graph_stats(*eager).recorded + cuda_graph_stats(*eager).replayed, 0);
}

// Steps decode-shaped from the very first one (one-token prompts, as `tpinfer
// logits` runs them) and batches that outgrow every earlier one: the buffers a
// step needs must grow outside any recording (a growth synchronizes the
// device, which a capture refuses).
TEST_P(CudaGraphs, DecodeShapedFirstStepsAndGrowingBatches) {
  SKIP_WITHOUT_GPU();
  const ModelConfig c = test_config(GetParam());
  const int block_size = 16, n = 8;  // the test workspace's logit rows
  std::mt19937_64 rng(9);
  const Paging paging = make_paging(std::vector<SeqSpec>(n, SeqSpec{0, 8}), block_size, rng);
  auto eager = cuda_backend(false), graphed = cuda_backend(true);
  Model me = load_test_model(*eager, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  Model mg = load_test_model(*graphed, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  std::vector<int> len(n, 0);
  // (first sequence, count): 2 new ones (unrecorded: the first attention shape),
  // 6 more (recorded, with more attention work than any step before), all 8
  // twice (recorded, replayed), then a smaller batch twice.
  const std::vector<std::pair<int, int>> steps = {{0, 2}, {2, 6}, {0, 8}, {0, 8}, {5, 3}, {5, 3}};
  for (size_t t = 0; t < steps.size(); ++t) {
    const BatchLayout b = decode_step(paging, steps[t].first, steps[t].second, len);
    expect_same_step(me, *eager, mg, *graphed, b, "step " + std::to_string(t));
    if (HasFatalFailure()) return;
  }
  const CudaGraphStats st = cuda_graph_stats(*graphed);
  std::cout << "[ graphs   ] " << st.recorded << " recorded, " << st.replayed << " replayed\n";
  EXPECT_GE(st.replayed, 2);  // the repeated batches of 8 and of 3
}

// --cuda-attention-streams 2: in steps with both decode and prefill rows,
// decode attention runs on a second stream beside prefill attention; the
// kernels are the same, so the logits are the same bits as on one stream.
TEST_P(CudaGraphs, DecodeAttentionBesidePrefillMatchesOneStream) {
  SKIP_WITHOUT_GPU();
  const ModelConfig c = test_config(GetParam());
  const int block_size = 16;
  // Three sequences, in the same batch order in every step (every one with
  // tokens in each): sequence 0 prefills 600 tokens beside the others (then
  // decodes past 256 keys, so its decode attention splits and merges on the
  // side stream), sequence 1 decodes early, sequence 2 prefills beside decodes.
  std::mt19937_64 rng(13);
  const Paging paging = make_paging({{0, 603}, {0, 55}, {0, 211}}, block_size, rng);
  CudaBackendOptions one, two;
  one.memory_fraction = two.memory_fraction = 0.05;
  two.attention_side_stream = true;
  auto a = make_cuda_backend(MPI_COMM_SELF, one), b = make_cuda_backend(MPI_COMM_SELF, two);
  Model ma = load_test_model(*a, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  Model mb = load_test_model(*b, c, MPI_COMM_SELF, paging.num_blocks, block_size);
  const std::vector<std::vector<SeqSpec>> steps = {
      {{0, 200}, {0, 50}, {0, 5}},     {{200, 200}, {50, 1}, {5, 50}},
      {{400, 200}, {51, 1}, {55, 50}}, {{600, 1}, {52, 1}, {105, 100}},
      {{601, 1}, {53, 1}, {205, 1}},   {{602, 1}, {54, 1}, {206, 5}}};
  for (size_t t = 0; t < steps.size(); ++t) {
    const BatchLayout batch = make_batch(steps[t], paging);
    expect_same_step(ma, *a, mb, *b, batch, "step " + std::to_string(t));
    if (HasFatalFailure()) return;
  }
  // The tensor-core kernels took the side stream (the generic kernel has none).
  if (c.head_dim == 64 || c.head_dim == 128) {
    EXPECT_GT(cuda_graph_stats(*b).beside, 0);
  }
  EXPECT_EQ(cuda_graph_stats(*a).beside, 0);
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaGraphs,
                         ::testing::Values("llama3_gqa_d64", "mistral_mha_d128",
                                           "qwen2_bias_tied_d16"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace tpinfer::gputest
