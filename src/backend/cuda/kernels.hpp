#pragma once
// Host-side launchers of the backend's kernels (each defined in a .cu file of
// this folder). Arguments are device pointers already checked by the backend
// (shapes, dtypes, ranges); every launcher enqueues on `stream` and checks the
// launch. Sizes are int64_t where a tensor may exceed 2^31 elements.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "base/random_fill.hpp"

namespace tpinfer::cuda {

using bf16 = __nv_bfloat16;

// Whether the launchers below let a kernel start while the one before it in
// the stream finishes (programmatic dependent launch, launch.cuh): set by the
// backend from CudaBackendOptions::programmatic_launch and the device (sm_90+).
void set_programmatic_launch(bool on);

// ---------------------------------------------------------------- gemv
// linear for n <= kMaxGemvRows rows (gemv.cu): out[n, m] = x[n, k] w[m, k]^T (+ bias[m]).
constexpr int kMaxGemvRows = 8;
// Whether launch_gemv takes this shape: n in [1, min(max_rows, kMaxGemvRows)],
// k a multiple of 8 and x, w 16-byte aligned.
bool gemv_applies(int64_t n, int64_t k, int64_t m, const void* x, const void* w, int max_rows);
void launch_gemv(const bf16* x, const bf16* w, const bf16* bias, bf16* out, int64_t n, int64_t k,
                 int64_t m, cudaStream_t stream);
// linear at any n with each output's order of summation independent of n
// (--deterministic's small weights); out is float32 when out_f32, else bf16.
// Whether it takes the shape: k a multiple of 8, x and w 16-byte aligned.
constexpr int64_t kDeterministicGemvElements = int64_t{1} << 22;  // weights below: this path
bool gemv_rows_applies(int64_t n, int64_t k, int64_t m, const void* x, const void* w);
void launch_gemv_rows(const bf16* x, const bf16* w, const bf16* bias, void* out, bool out_f32,
                      int64_t n, int64_t k, int64_t m, cudaStream_t stream);

// ---------------------------------------------------------------- elementwise
// out[t] = table[token_ids[t] - vocab_offset] when that row exists, else zeros.
void launch_embed(const bf16* table, int64_t rows, int64_t h, int64_t vocab_offset,
                  const int32_t* token_ids, int64_t n, bf16* out, cudaStream_t stream);
// out = x / sqrt(mean(x^2) + eps) * w per row; out may alias x.
void launch_rmsnorm(const bf16* x, const bf16* w, float eps, int64_t n, int64_t h, bf16* out,
                    cudaStream_t stream);
// residual += x (rounded to bf16 as stored), then out = rmsnorm(residual) * w; out may alias x.
void launch_add_rmsnorm(bf16* residual, const bf16* x, const bf16* w, float eps, int64_t n,
                        int64_t h, bf16* out, cudaStream_t stream);
// out[t, j] = silu(gate_up[t, j]) * gate_up[t, i + j]
void launch_silu_mul(const bf16* gate_up, int64_t n, int64_t i, bf16* out, cudaStream_t stream);
// out[j] = x[rows[j]] for j < m; rows of `cols` bf16 values.
void launch_gather_rows(const bf16* x, int64_t cols, const int32_t* rows, int64_t m, bf16* out,
                        cudaStream_t stream);
// out[r] = (max, col_offset + argmax) of row r's first valid_cols values, fp32
// pairs; logits bf16 or (bf16_logits false) fp32.
void launch_argmax_rows(const void* logits, bool bf16_logits, int64_t n, int64_t cols,
                        int64_t valid_cols, int64_t col_offset, float* out, cudaStream_t stream);
// out[i] = sum over r in 0..parts-1, in that order, of in[r * count + i], in
// fp32, rounded once (a TP all-reduce in a fixed order: rank r's part at r).
void launch_sum_parts(const bf16* in, int64_t parts, int64_t count, bf16* out, cudaStream_t stream);
// ---------------------------------------------------------------- sampling
// One row to sample (Backend::sample_rows): the logits row and its settings.
struct SampleRow {
  int32_t row;
  int32_t logprobs;  // 0 or 1
  float temperature, top_p;
  int64_t top_k;
  uint64_t seed;
  int64_t position;
};
// The logits a sampling kernel reads.
struct LogitsRows {
  const void* logits;  // [parts, n, cols] (parts 1: [n, cols]), fp32 or bf16
  bool bf16_logits;
  int64_t parts, n, cols, vocab;  // vocab <= parts * cols, < 2^24
};
struct SampleArgs : LogitsRows {
  const SampleRow* rows;  // device, m entries
  int64_t m;
  float* out;  // [m, 2]: token (-1: no finite maximum), logprob
};
// One block per row; sampling.cu describes the method and its precision.
void launch_sample_rows(const SampleArgs& a, cudaStream_t stream);
struct LogprobArgs : LogitsRows {
  const int32_t* rows;  // device: m row indices, then m targets (-1: none)
  int64_t m;
  int k;       // top tokens a row, <= 20
  float* out;  // [m, 1 + k, 2]
};
// Backend::logprob_rows: one block per row (sampling.cu).
void launch_logprob_rows(const LogprobArgs& a, cudaStream_t stream);

// out[t, j] = bias[j] (or 0 when bias is null): linear with an empty inner dimension.
void launch_fill_rows(const bf16* bias, int64_t n, int64_t m, bf16* out, cudaStream_t stream);

// dst[i, j] (rows x cols, dtype) = the seeded random value of random_fill.hpp.
void launch_fill_random(void* out, DType dtype, int64_t rows, int64_t cols, const RandomFill& f,
                        cudaStream_t stream);

// ---------------------------------------------------------------- rope
struct RopeParams {
  bf16* qkv;              // [n, (q_heads + 2 kv_heads) * head_dim]
  const float* inv_freq;  // [head_dim / 2]
  void* k_cache;          // [slots, kv_heads * head_dim], bf16 or fp8 e4m3 (fp8_cache)
  void* v_cache;
  bool fp8_cache;
  const int32_t* positions;
  const int32_t* slot_mapping;
  int64_t n_tokens;
  int q_heads, kv_heads, head_dim;
};
void launch_rope_write_kv(const RopeParams& p, cudaStream_t stream);

// ---------------------------------------------------------------- attention
// One unit of tensor-core attention work: rows [row0, row0 + nrows) of sequence
// `seq`, where row r is (query token r / G, q head r % G of the kv head) and G =
// q_heads / kv_heads; keys [0, kv_end) of the sequence may be needed.
struct alignas(16) AttnItem {
  int32_t seq, row0, kv_end, nrows;
};

constexpr int kDecodeRows = 16;   // rows of one decode item (one mma tile)
constexpr int kPrefillRows = 64;  // rows of one prefill item (four warps x 16)
constexpr int kSplitAlign = 64;   // a split's key range starts on this multiple
constexpr int kMaxSplits = 64;    // splits of one decode item, at most

#if defined(__CUDACC__)
#define TPINFER_KERNEL_HD __host__ __device__
#else
#define TPINFER_KERNEL_HD
#endif
// Keys per split of a decode item whose kv_end keys are cut into `splits`
// parts: the smallest multiple of kSplitAlign that covers them. Per item, so a
// decode step's launch shape depends on the number of items and splits only,
// not on the context lengths, and a CUDA graph of it replays as they grow.
TPINFER_KERNEL_HD inline int decode_split_chunk(int kv_end, int splits) {
  const int per = (kv_end + splits - 1) / splits;
  const int chunk = (per + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  return chunk > 0 ? chunk : kSplitAlign;
}

struct AttentionParams {
  const bf16* qkv;
  int64_t qkv_stride;   // elements per token row: (q_heads + 2 kv_heads) * head_dim
  const void* k_cache;  // bf16, or fp8 e4m3 when fp8_cache
  const void* v_cache;
  bool fp8_cache;
  bf16* out;  // [n, q_heads * head_dim]
  const int32_t* positions;
  const int32_t* query_start;
  const int32_t* block_tables;
  const int32_t* token_seq;  // sequence of each token (the generic kernel)
  int64_t n_tokens;
  int table_stride, block_size;
  int q_heads, kv_heads, head_dim;
  float scale_log2;  // scale * log2(e): softmax runs in base 2
};

struct AttentionPlan {
  const AttnItem* decode_items;  // rows <= kDecodeRows each
  int n_decode;
  int splits;  // key-range splits of each decode item (1: no partials); see decode_split_chunk
  float* partial_o;    // [n_decode, kv_heads, kDecodeRows, splits, head_dim]
  float* partial_lse;  // [n_decode, kv_heads, kDecodeRows, splits]
  // [n_decode, kv_heads], zero between launches: splits finished so far; the
  // last of an item's splits merges them and sets its count back to zero.
  int* split_counts;
  const AttnItem* prefill_items;  // rows <= kPrefillRows each
  int n_prefill;
  // Decode grid order: 1 puts the kv heads of one item in consecutive blocks
  // (blockIdx.x = head), so the rows of a cache block, which interleave the
  // heads, are read at about the same time; 0: items first (blockIdx.x = item).
  int head_major;

  // Batch-invariant mode (chunk_keys > 0; every item is a prefill item): a
  // row's keys are cut at the fixed multiples of chunk_keys, each chunk's
  // softmax state is computed from nothing over its 64-key tiles in order,
  // and the states with a key the row sees are folded in chunk order. So a
  // long context can spread over blocks, and a row's bits still depend on its
  // position alone. The first n_split prefill items (<= kDecodeRows rows
  // each) run one block per chunk (gridDim.z = split_chunks) and leave their
  // states in chunk_state for a fold kernel; the rest fold in registers
  // (others_chunked) or, when none of them has a second chunk, run as usual.
  int chunk_keys;
  int n_split;
  int split_chunks;      // >= the chunks of every split item
  int split_row_stride;  // rows per split item in chunk_state (its largest nrows)
  int others_chunked;
  float* chunk_state;  // [n_split, kv_heads, split_row_stride, split_chunks] x (head_dim outputs),
                       // then the same entries' (max, sum) pairs

  // 1: the prefill items of a bf16 cache at head_dim 128 run the Hopper wgmma
  // kernel (attention_wgmma.cu) instead of the mma.sync one; only where the
  // keys go as one pass (chunk_keys 0: not the batch-invariant mode).
  int prefill_wgmma;
};

// Batch-invariant mode's key chunk: keys per chunk (a multiple of the 64-key tile).
constexpr int kDetChunkKeys = 512;
static_assert(kDetChunkKeys % 64 == 0, "a chunk is whole 64-key prefill tiles");

// Whether the tensor-core kernels are built for this head_dim (else: generic).
bool attention_mma_supported(int head_dim);
// Sets the kernels' shared-memory limits; once per device, before the first
// launch (deterministic: the batch-invariant mode's folding kernel's too).
void attention_init(bool deterministic);
// Shared memory a block of the batch-invariant mode's folding kernel takes, at most.
size_t attention_folded_smem_bytes();
// decode_stream: where the decode items' kernels go (the caller forks it from
// and joins it to `stream`; the same stream: one after the other).
void launch_attention_mma(const AttentionParams& p, const AttentionPlan& plan, cudaStream_t stream,
                          cudaStream_t decode_stream);
// The Hopper (sm_90a) prefill kernel of attention_wgmma.cu: head_dim 128, a
// bf16 cache, keys in one pass. Init sets its shared-memory limit (once per
// device, before its first launch); launch runs n_items prefill items (device
// array) over p's kv heads, as launch_attention_mma's prefill items run.
void attention_wgmma_init();
void launch_attention_wgmma_prefill(const AttentionParams& p, const AttnItem* items, int n_items,
                                    cudaStream_t stream);
// Any even head_dim <= 256; one warp per (token, q head).
void launch_attention_generic(const AttentionParams& p, cudaStream_t stream);

}  // namespace tpinfer::cuda
