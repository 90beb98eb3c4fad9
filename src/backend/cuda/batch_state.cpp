#include "backend/cuda/batch_state.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>

#include "backend/op_checks.hpp"
#include "base/error.hpp"

namespace tpinfer::cuda {

void BatchState::set(const BatchLayout& b) {
  validate_batch("cuda", b);
  b_ = b;
  work_ = AttentionWork{};

  const int32_t n = b.num_tokens(), seqs = b.num_seqs();
  max_slot_ = -1;
  for (int32_t s : b.slot_mapping) max_slot_ = std::max<int64_t>(max_slot_, s);
  // The smallest slot must not be negative either: fold it into the check the
  // ops make against the cache size by reporting a huge value.
  for (int32_t s : b.slot_mapping)
    if (s < 0) max_slot_ = INT64_MAX;
  max_block_ = -1;
  for (int32_t s = 0; s < seqs; ++s) {
    const int64_t used = (static_cast<int64_t>(b.context_len[s]) + b.block_size - 1) / b.block_size;
    for (int64_t i = 0; i < used; ++i) {
      const int32_t blk = b.block_tables[s * static_cast<int64_t>(b.max_blocks_per_seq) + i];
      max_block_ = blk < 0 ? INT64_MAX : std::max<int64_t>(max_block_, blk);
    }
  }
  max_logit_row_ = -1;
  for (int32_t r : b.logit_rows) max_logit_row_ = std::max<int64_t>(max_logit_row_, r);

  PackedBatch& p = packed_;
  p.data.clear();
  auto put = [&](const std::vector<int32_t>& v) {
    const int64_t off = static_cast<int64_t>(p.data.size());
    p.data.insert(p.data.end(), v.begin(), v.end());
    // Each array starts on 16 bytes, so every device pointer is aligned.
    p.data.resize((p.data.size() + 3) / 4 * 4, 0);
    return off;
  };
  p.token_ids = put(b.token_ids);
  p.positions = put(b.positions);
  p.slot_mapping = put(b.slot_mapping);
  p.query_start = put(b.query_start);
  p.context_len = put(b.context_len);
  // The tables go up with their stride rounded to a power of two, so a decode
  // step's CUDA graph (keyed by the stride) is recorded once per doubling of
  // the longest context instead of once per block it grows.
  const int64_t used_stride = std::max<int64_t>(1, b.max_blocks_per_seq);
  table_stride_ = static_cast<int32_t>(std::bit_ceil(static_cast<uint64_t>(used_stride)));
  if (table_stride_ == b.max_blocks_per_seq) {
    p.block_tables = put(b.block_tables);
  } else {
    padded_tables_.assign(static_cast<size_t>(seqs) * table_stride_, -1);
    for (int32_t s = 0; s < seqs; ++s)
      std::copy_n(b.block_tables.begin() + s * static_cast<int64_t>(b.max_blocks_per_seq),
                  b.max_blocks_per_seq,
                  padded_tables_.begin() + s * static_cast<int64_t>(table_stride_));
    p.block_tables = put(padded_tables_);
  }
  p.logit_rows = put(b.logit_rows);
  std::vector<int32_t> token_seq(static_cast<size_t>(n), 0);
  for (int32_t s = 0; s < seqs; ++s)
    for (int32_t t = b.query_start[s]; t < b.query_start[s + 1]; ++t) token_seq[t] = s;
  p.token_seq = put(token_seq);
}

const AttentionWork& BatchState::attention_work(int group, bool all_prefill) {
  if (work_.group == group && work_.all_prefill == all_prefill) return work_;
  work_ = AttentionWork{};
  work_.group = group;
  work_.all_prefill = all_prefill;
  const BatchLayout& b = b_;
  std::vector<AttnItem> prefill;
  // Highest position among tokens [t0, t1) of a sequence (positions are
  // normally increasing, but nothing here relies on it).
  auto max_pos = [&](int32_t t0, int32_t t1) {
    int32_t m = -1;
    for (int32_t t = t0; t < t1; ++t) m = std::max(m, b.positions[t]);
    return m;
  };
  for (int32_t s = 0; s < b.num_seqs(); ++s) {
    const int32_t t0 = b.query_start[s], nq = b.query_start[s + 1] - t0;
    if (nq == 0) continue;
    const int64_t rows = static_cast<int64_t>(nq) * group;
    if (rows <= kDecodeRows && !all_prefill) {
      const int32_t kv_end = max_pos(t0, t0 + nq) + 1;
      work_.items.push_back({s, 0, kv_end, static_cast<int32_t>(rows)});
      work_.max_decode_kv = std::max(work_.max_decode_kv, kv_end);
      continue;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += kPrefillRows) {
      const int64_t nr = std::min<int64_t>(kPrefillRows, rows - r0);
      const int32_t first = static_cast<int32_t>(r0 / group);
      const int32_t last = static_cast<int32_t>((r0 + nr - 1) / group);
      prefill.push_back({s, static_cast<int32_t>(r0), max_pos(t0 + first, t0 + last + 1) + 1,
                         static_cast<int32_t>(nr)});
    }
  }
  // Longest key range first, in each kernel's list: blocks start roughly in
  // grid order, so the long causal items no longer start last and leave the
  // GPU to a few of them at the end of the launch (a causal prompt's items
  // range from one tile of keys to all of them). Order changes no result.
  const auto longest_first = [](const AttnItem& a, const AttnItem& b) {
    return a.kv_end > b.kv_end;
  };
  std::stable_sort(work_.items.begin(), work_.items.end(), longest_first);
  std::stable_sort(prefill.begin(), prefill.end(), longest_first);
  work_.n_decode = static_cast<int>(work_.items.size());
  work_.n_prefill = static_cast<int>(prefill.size());
  work_.items.insert(work_.items.end(), prefill.begin(), prefill.end());
  return work_;
}

ChunkPlan plan_key_chunks(const AttnItem* items, int n_items, int chunk_keys, int kv_heads,
                          int head_dim, size_t state_budget) {
  ChunkPlan plan;
  const auto chunks_of = [&](const AttnItem& it) {
    return (it.kv_end + chunk_keys - 1) / chunk_keys;
  };
  int n_small = 0, most_chunks = 1, stride = 0;
  for (int i = 0; i < n_items; ++i)
    if (items[i].nrows <= kDecodeRows) {
      ++n_small;
      most_chunks = std::max(most_chunks, chunks_of(items[i]));
      stride = std::max(stride, static_cast<int>(items[i].nrows));
    }
  int pow2 = 1;
  while (pow2 < most_chunks) pow2 *= 2;
  const size_t bytes = static_cast<size_t>(n_small) * kv_heads * stride * pow2 *
                       (static_cast<size_t>(head_dim) + 2) * sizeof(float);
  // With no second chunk among them, splitting buys nothing but a launch.
  const bool split = n_small > 0 && most_chunks > 1 && bytes <= state_budget;
  plan.items.reserve(static_cast<size_t>(n_items));
  for (int i = 0; i < n_items; ++i)
    if (split && items[i].nrows <= kDecodeRows) plan.items.push_back(items[i]);
  for (int i = 0; i < n_items; ++i)
    if (!(split && items[i].nrows <= kDecodeRows)) {
      plan.items.push_back(items[i]);
      plan.others_chunked = plan.others_chunked || chunks_of(items[i]) > 1;
    }
  if (split) {
    plan.n_split = n_small;
    plan.split_chunks = pow2;
    plan.split_row_stride = stride;
    plan.state_bytes = bytes;
  }
  return plan;
}

int choose_decode_splits(int n_decode, int kv_heads, int max_kv, int sms) {
  // A decode block holds ~3 blocks an SM; aim for ~4 waves of them, so the
  // last, partial wave costs little, but give every split about 256 keys or
  // more (4 tiles a warp) so the prologue and the merge stay small next to it.
  constexpr int64_t kMinKeys = 256;
  int splits = 1;
  const int64_t base = static_cast<int64_t>(n_decode) * kv_heads;
  if (base > 0 && max_kv > kMinKeys) {
    const int64_t want = (12LL * sms + base - 1) / base;
    const int64_t by_length = (max_kv + kMinKeys - 1) / kMinKeys;
    splits = static_cast<int>(std::clamp<int64_t>(std::min(want, by_length), 1, kMaxSplits));
  }
  // Rounding the chunk up to kSplitAlign can leave the last split empty; drop it.
  const int chunk = decode_split_chunk(std::max(max_kv, 1), splits);
  return static_cast<int>(std::max<int64_t>(1, (static_cast<int64_t>(max_kv) + chunk - 1) / chunk));
}

}  // namespace tpinfer::cuda
