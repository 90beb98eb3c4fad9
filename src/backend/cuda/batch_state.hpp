#pragma once
// One step's BatchLayout on the host side of the cuda backend: validated,
// packed into one int32 array for a single upload, with the bounds the ops
// check (largest slot, block id and logit row referenced), and the attention
// work list (tensor-core items, decode splits) built once per step and group.
#include <cstdint>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "base/batch.hpp"

namespace tpinfer::cuda {

// Offsets (in int32 elements) of each array inside the packed upload.
struct PackedBatch {
  std::vector<int32_t> data;
  int64_t token_ids = 0, positions = 0, slot_mapping = 0, query_start = 0, context_len = 0,
          block_tables = 0, logit_rows = 0, token_seq = 0;
};

struct AttentionWork {
  int group = 0;  // q heads per kv head the items were built for (0: none yet)
  bool all_prefill = false;
  std::vector<AttnItem> items;  // decode items first, then prefill items
  int n_decode = 0, n_prefill = 0;
  int max_decode_kv = 0;  // longest key range of a decode item
};

class BatchState {
 public:
  // Validates `b` (throws Error naming the field and rule) and packs it.
  void set(const BatchLayout& b);
  const BatchLayout& layout() const { return b_; }
  const PackedBatch& packed() const { return packed_; }
  int64_t max_slot() const { return max_slot_; }    // -1 when no tokens
  int64_t max_block() const { return max_block_; }  // over blocks that contexts touch
  int64_t max_logit_row() const { return max_logit_row_; }
  // Row stride of the uploaded block tables: max_blocks_per_seq rounded up to a power of two.
  int32_t table_stride() const { return table_stride_; }
  // Items for G = group: a sequence with nq * G <= kDecodeRows rows is one
  // decode item; longer ones are cut into kPrefillRows-row prefill items.
  // all_prefill: every sequence takes prefill items (batch-invariant mode: one
  // kernel, one tile order over the keys, for every row).
  const AttentionWork& attention_work(int group, bool all_prefill = false);

 private:
  BatchLayout b_;
  PackedBatch packed_;
  AttentionWork work_;
  int64_t max_slot_ = -1, max_block_ = -1, max_logit_row_ = -1;
  int32_t table_stride_ = 1;
  std::vector<int32_t> padded_tables_;
};

// Batch-invariant mode's plan of key chunks (AttentionPlan::chunk_keys) for
// one step's prefill items: `items` reordered with the split ones first.
// Items of <= kDecodeRows rows split (one block per chunk) when one of them
// has a second chunk and the states of all of them fit in state_budget bytes,
// so that a long context at a small batch spreads over blocks; the others fold their chunks in
// registers, or run whole when none has a second chunk. The choice changes no bits, only speed.
// split_chunks is a power of two, so that a CUDA graph of a decode step replays while its contexts
// grow.
struct ChunkPlan {
  std::vector<AttnItem> items;
  int n_split = 0, split_chunks = 0, split_row_stride = 0;
  bool others_chunked = false;
  size_t state_bytes = 0;  // of chunk_state
};
ChunkPlan plan_key_chunks(const AttnItem* items, int n_items, int chunk_keys, int kv_heads,
                          int head_dim, size_t state_budget);

// Splits of each decode item's keys over blocks (flash-decoding): about four
// waves of blocks on `sms` multiprocessors, about 256 keys a split or more, at
// most kMaxSplits, and none empty for the longest context max_kv. Each item
// cuts its own keys into that many parts (decode_split_chunk).
int choose_decode_splits(int n_decode, int kv_heads, int max_kv, int sms);

}  // namespace tpinfer::cuda
