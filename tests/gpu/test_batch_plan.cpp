// Host-side planning of the cuda backend (no GPU needed, so these run in CI
// too): the attention work list covers every (token, q head) row of a batch
// exactly once, with the right key ranges; decode splits cover the longest
// context; bad batches are rejected as on the cpu backend.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "backend/cuda/batch_state.hpp"
#include "base/error.hpp"
#include "gpu_test_util.hpp"

namespace tpinfer::gputest {
namespace {

using cuda::AttnItem;

TEST(CudaBatchPlan, AttentionItemsCoverEveryRowOnce) {
  std::mt19937_64 rng(3);
  const std::vector<SeqSpec> seqs = {{0, 37},   {19, 1},  {0, 1}, {2999, 1}, {50, 2},
                                     {100, 70}, {0, 200}, {5, 0}, {2000, 33}};
  Paging paging = make_paging(seqs, 16, rng);
  const BatchLayout b = make_batch(seqs, paging);
  for (int group : {1, 2, 4, 8, 16, 32}) {
    cuda::BatchState st;
    st.set(b);
    const cuda::AttentionWork& w = st.attention_work(group);
    ASSERT_EQ(w.group, group);
    ASSERT_EQ(static_cast<size_t>(w.n_decode + w.n_prefill), w.items.size());
    std::map<std::pair<int, int>, int> seen;  // (token, head in group) -> count
    for (size_t i = 0; i < w.items.size(); ++i) {
      const AttnItem& it = w.items[i];
      const bool decode = static_cast<int>(i) < w.n_decode;
      EXPECT_LE(it.nrows, decode ? cuda::kDecodeRows : cuda::kPrefillRows);
      EXPECT_GT(it.nrows, 0);
      if (decode) {
        EXPECT_EQ(it.row0, 0);
      }
      const int t0 = b.query_start[it.seq];
      int max_pos = -1;
      for (int r = it.row0; r < it.row0 + it.nrows; ++r) {
        const int tok = t0 + r / group;
        ASSERT_LT(tok, b.query_start[it.seq + 1]) << "row past the sequence's tokens";
        ++seen[{tok, r % group}];
        max_pos = std::max(max_pos, b.positions[tok]);
      }
      EXPECT_EQ(it.kv_end, max_pos + 1);
      if (decode) {
        EXPECT_LE(it.kv_end, w.max_decode_kv);
      }
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(b.num_tokens()) * group);
    for (const auto& [row, count] : seen) EXPECT_EQ(count, 1);
    // Each kernel's items, longest key range first (the launch's tail).
    for (size_t i = 1; i < w.items.size(); ++i)
      if (static_cast<int>(i) != w.n_decode) {
        EXPECT_GE(w.items[i - 1].kv_end, w.items[i].kv_end) << "item " << i;
      }
  }
}

TEST(CudaBatchPlan, DecodeSplitsCoverEveryContext) {
  for (int n_decode : {1, 3, 64, 256})
    for (int kv_heads : {1, 8})
      for (int max_kv : {1, 64, 129, 256, 257, 1000, 1281, 3000, 131072}) {
        const int splits = cuda::choose_decode_splits(n_decode, kv_heads, max_kv, 132);
        EXPECT_GE(splits, 1);
        EXPECT_LE(splits, cuda::kMaxSplits);
        const int longest = cuda::decode_split_chunk(max_kv, splits);
        EXPECT_LT(static_cast<int64_t>(splits - 1) * longest, max_kv) << "an empty split";
        // Every shorter item's own chunks cover it too, aligned.
        for (int kv_end : {1, 63, 64, 65, max_kv / 3 + 1, max_kv}) {
          if (kv_end > max_kv) continue;
          const int chunk = cuda::decode_split_chunk(kv_end, splits);
          EXPECT_EQ(chunk % cuda::kSplitAlign, 0);
          EXPECT_GE(static_cast<int64_t>(splits) * chunk, kv_end);
        }
        if (n_decode * kv_heads >= 12 * 132 || max_kv <= 256) {
          EXPECT_EQ(splits, 1);
        }
      }
  // One long sequence alone gets many splits.
  EXPECT_GE(cuda::choose_decode_splits(1, 8, 3000, 132), 8);
}

// The uploaded block tables: each sequence's row at a power-of-two stride (so a
// decode step's graph survives its contexts growing by a block), padded with -1.
TEST(CudaBatchPlan, BlockTablesPackedAtPowerOfTwoStride) {
  std::mt19937_64 rng(5);
  for (int len : {1, 16, 17, 100, 1000}) {
    const std::vector<SeqSpec> seqs = {{len - 1, 1}, {0, 5}, {len / 2, 1}};
    Paging paging = make_paging(seqs, 16, rng);
    const BatchLayout b = make_batch(seqs, paging);
    cuda::BatchState st;
    st.set(b);
    const int64_t stride = st.table_stride();
    EXPECT_GE(stride, b.max_blocks_per_seq);
    EXPECT_LT(stride, 2 * std::max(1, b.max_blocks_per_seq));
    EXPECT_EQ(stride & (stride - 1), 0) << "stride " << stride << " not a power of two";
    const int32_t* tables = st.packed().data.data() + st.packed().block_tables;
    for (int s = 0; s < b.num_seqs(); ++s)
      for (int64_t i = 0; i < stride; ++i) {
        const int32_t want =
            i < b.max_blocks_per_seq ? b.block_tables[s * b.max_blocks_per_seq + i] : -1;
        EXPECT_EQ(tables[s * stride + i], want) << "len " << len << " seq " << s << " entry " << i;
      }
  }
}

TEST(CudaBatchPlan, RejectsInconsistentLayouts) {
  std::mt19937_64 rng(4);
  const std::vector<SeqSpec> seqs = {{0, 3}, {5, 1}};
  Paging paging = make_paging(seqs, 4, rng);
  const BatchLayout good = make_batch(seqs, paging);
  cuda::BatchState st;
  EXPECT_NO_THROW(st.set(good));
  EXPECT_EQ(st.max_logit_row(), 3);
  EXPECT_EQ(st.max_slot(), *std::max_element(good.slot_mapping.begin(), good.slot_mapping.end()));
  BatchLayout b = good;
  b.slot_mapping.pop_back();
  EXPECT_THROW(st.set(b), Error);
  b = good;
  b.positions[3] = 6;
  EXPECT_THROW(st.set(b), Error);
  b = good;
  b.block_tables.pop_back();
  EXPECT_THROW(st.set(b), Error);
  b = good;
  b.block_tables[0] = -1;  // inside seq 0's context: attention must refuse it
  st.set(b);
  EXPECT_GT(st.max_block(), int64_t{1} << 40);
}

// Batch-invariant mode's key chunks: small items go first and split when
// their states fit the budget; every item stays exactly once; the grid's
// chunk count is a power of two covering every split item.
TEST(CudaBatchPlan, KeyChunksSplitSmallItemsWithinTheBudget) {
  const std::vector<AttnItem> items = {{0, 0, 4000, 64},  {1, 0, 10, 4},   {2, 0, 1300, 4},
                                       {0, 64, 4000, 64}, {3, 0, 513, 16}, {4, 0, 300, 40}};
  const int chunk = 512, kvh = 8, hd = 128;
  const auto same_items = [&](const cuda::ChunkPlan& p) {
    std::multiset<std::tuple<int, int, int, int>> a, b;
    for (const AttnItem& it : items) a.insert({it.seq, it.row0, it.kv_end, it.nrows});
    for (const AttnItem& it : p.items) b.insert({it.seq, it.row0, it.kv_end, it.nrows});
    return a == b;
  };
  const cuda::ChunkPlan split = cuda::plan_key_chunks(items.data(), 6, chunk, kvh, hd, 1 << 30);
  EXPECT_TRUE(same_items(split));
  ASSERT_EQ(split.n_split, 3);
  EXPECT_EQ(split.items[0].seq, 1);  // the small ones, in their order
  EXPECT_EQ(split.items[1].seq, 2);
  EXPECT_EQ(split.items[2].seq, 3);
  EXPECT_EQ(split.split_chunks, 4);  // 1,300 keys: 3 chunks, rounded up
  EXPECT_EQ(split.split_row_stride, 16);
  EXPECT_TRUE(split.others_chunked);  // 4,000 keys
  EXPECT_EQ(split.state_bytes, size_t{3} * kvh * 16 * 4 * (hd + 2) * sizeof(float));

  // Over the budget: nothing splits, the order stays.
  const cuda::ChunkPlan whole =
      cuda::plan_key_chunks(items.data(), 6, chunk, kvh, hd, split.state_bytes - 1);
  EXPECT_TRUE(same_items(whole));
  EXPECT_EQ(whole.n_split, 0);
  EXPECT_EQ(whole.items[1].seq, 1);
  EXPECT_TRUE(whole.others_chunked);

  // No item past one chunk among the rest: they run whole.
  const cuda::ChunkPlan short_rest =
      cuda::plan_key_chunks(items.data() + 4, 2, chunk, kvh, hd, 1 << 30);
  EXPECT_EQ(short_rest.n_split, 1);
  EXPECT_EQ(short_rest.split_chunks, 2);
  EXPECT_FALSE(short_rest.others_chunked);

  // No small item with a second chunk: nothing to gain from a split.
  const std::vector<AttnItem> short_small = {{0, 0, 4000, 64}, {1, 0, 512, 4}};
  const cuda::ChunkPlan none =
      cuda::plan_key_chunks(short_small.data(), 2, chunk, kvh, hd, 1 << 30);
  EXPECT_EQ(none.n_split, 0);
  EXPECT_EQ(none.items[1].seq, 1);
  EXPECT_TRUE(none.others_chunked);
}

}  // namespace
}  // namespace tpinfer::gputest
