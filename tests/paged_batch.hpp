#pragma once
// Test batches over a paged KV cache, shared by the cpu op tests and the
// cuda-vs-cpu ones: sequences of a few query tokens at chosen positions, with
// the cache's blocks handed out in shuffled order (so a backend that assumes
// contiguous blocks fails) and every block-table row padded with -1.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "base/batch.hpp"

namespace tpinfer::test {

// One sequence of a test batch: `n_query` tokens at positions start..start+n_query-1.
struct SeqSpec {
  int start;
  int n_query;
  int context() const { return start + n_query; }
};

struct Paging {
  int block_size = 0;
  int num_blocks = 0;
  int max_blocks = 0;
  std::vector<int32_t> tables;
  int32_t slot(int s, int j) const {
    return tables[s * max_blocks + j / block_size] * block_size + j % block_size;
  }
};

inline Paging make_paging(const std::vector<SeqSpec>& seqs, int block_size, std::mt19937_64& rng) {
  Paging p;
  p.block_size = block_size;
  int needed = 0;
  for (const auto& s : seqs) {
    const int nb = (s.context() + block_size - 1) / block_size;
    needed += nb;
    p.max_blocks = std::max(p.max_blocks, nb + 1);  // +1: some padding in every row
  }
  p.num_blocks = needed + 3;  // spare blocks that nobody owns
  std::vector<int32_t> ids(p.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.tables.assign(seqs.size() * p.max_blocks, -1);
  size_t next = 0;
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int b = 0; b < (seqs[s].context() + block_size - 1) / block_size; ++b)
      p.tables[s * p.max_blocks + b] = ids[next++];
  return p;
}

// The batch of `seqs` over `p`: token ids 1..50, one logit row a sequence (its last token).
inline BatchLayout make_batch(const std::vector<SeqSpec>& seqs, const Paging& p) {
  BatchLayout b;
  b.block_size = p.block_size;
  b.query_start.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int q = 0; q < seqs[s].n_query; ++q) {
      const int pos = seqs[s].start + q;
      b.token_ids.push_back(1 + (pos * 7 + static_cast<int>(s) * 13) % 50);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(p.slot(static_cast<int>(s), pos));
    }
    b.query_start.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.context_len.push_back(seqs[s].context());
    b.logit_rows.push_back(b.query_start.back() - 1);
  }
  b.max_blocks_per_seq = p.max_blocks;
  b.block_tables = p.tables;
  return b;
}

// A batch of independent single-token sequences, for ops that read token ids only.
inline BatchLayout single_token_batch(const std::vector<int32_t>& ids) {
  BatchLayout b;
  b.token_ids = ids;
  const auto n = static_cast<int32_t>(ids.size());
  b.positions.assign(ids.size(), 0);
  b.slot_mapping.resize(ids.size());
  std::iota(b.slot_mapping.begin(), b.slot_mapping.end(), 0);
  b.query_start.resize(ids.size() + 1);
  std::iota(b.query_start.begin(), b.query_start.end(), 0);
  b.context_len.assign(ids.size(), 1);
  b.max_blocks_per_seq = 1;
  b.block_tables.resize(ids.size());
  std::iota(b.block_tables.begin(), b.block_tables.end(), 0);
  for (int32_t t = 0; t < n; ++t) b.logit_rows.push_back(t);
  return b;
}

// Three sequences of 4, 2 and 1 tokens in blocks 0, 1, 2 of 4 tokens, whose
// logits are wanted at `logit_rows`: the gather_rows tests' batch.
inline BatchLayout three_sequences(std::vector<int32_t> logit_rows) {
  BatchLayout b;
  b.token_ids.assign(7, 1);
  b.positions = {0, 1, 2, 3, 0, 1, 0};
  b.slot_mapping = {0, 1, 2, 3, 4, 5, 6};
  b.query_start = {0, 4, 6, 7};
  b.context_len = {4, 2, 1};
  b.max_blocks_per_seq = 1;
  b.block_tables = {0, 1, 2};
  b.block_size = 4;
  b.logit_rows = std::move(logit_rows);
  return b;
}

}  // namespace tpinfer::test
