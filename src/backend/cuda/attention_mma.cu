// Paged causal attention on the tensor cores (mma.sync m16n8k16, fp32
// accumulators; bf16 inputs over a bf16 cache, f16 over an fp8 one, see
// kF16Mma), flash-attention style: scores, online softmax and P.V stay
// in registers; K/V tiles come from the paged cache into shared memory with
// cp.async, double-buffered.
//
// A "row" is one (query token, q head) pair of one kv head: row r of sequence s
// is token r / G, head r % G (G = q_heads / kv_heads). Stacking the G heads of a
// kv head as rows makes GQA read each K/V tile once for all of them, and turns
// a decode token (one query) into a G-row matrix problem.
//
// Two kernels share the per-warp tile step:
//  - prefill: 64 rows (4 warps x 16) share 64-key tiles; no split.
//  - decode: up to 16 rows (one warp tile); the block's 4 warps take turns over
//    16-key tiles of the block's key range, then merge their softmax states in
//    shared memory. Long contexts are also split across blocks (gridDim.z)
//    (flash-decoding); the last block of an item's splits to finish merges
//    them, so a layer's decode attention is one kernel, not two.
// Softmax runs in base 2 on scores pre-multiplied by scale * log2(e).
#include <algorithm>
#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {

constexpr int kPad = 8;  // bf16 per smem row of padding: rows 16 bytes apart in banks
constexpr int kThreads = 128;
constexpr int kPrefillKeys = 64;  // keys per prefill tile (shared by the 4 warps)
constexpr int kDecodeKeys = 16;   // keys per decode tile (one warp's own)
constexpr float kNegInf = -INFINITY;

// The tensor cores' input type over a cache of type C. bf16 for a bf16 cache.
// f16 for an fp8 one: e4m3 -> f16x2 is one exact conversion where e4m3 -> bf16x2
// is four (via f16 and f32), and that conversion bounds the fp8 kernels. f16
// holds every e4m3 and every bf16 of [2^-14, 65504] exactly, so Q and K/V enter
// exactly (Q is clamped to f16's range), and P in [0, 1] is rounded more finely.
template <typename C>
constexpr bool kF16Mma = sizeof(C) == 1;

// 16-bit tile elements as the tensor cores read them (bf16 or f16 bits).
using Bits16 = uint16_t;

// d += a * b: A 16x16 row-major, B 16x8 column-major, fp32 accumulators;
// inputs bf16, or f16 when kF16.
template <bool kF16>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (kF16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four transposed 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const Bits16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}

// Four 8x8 b16 matrices as stored; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const Bits16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}

// Two values as one A-fragment register of the tensor cores' input type.
template <bool kF16>
__device__ __forceinline__ uint32_t pack_input(float lo, float hi) {
  if constexpr (kF16) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    return pack_bf16(lo, hi);
  }
}

__device__ __forceinline__ uint32_t ld_u32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Two adjacent q elements (bf16) as an A-fragment register of the input type:
// as stored for bf16; for f16 clamped to +-65504 (no q of a real model comes
// near; a larger one would otherwise become inf), else exact.
template <bool kF16>
__device__ __forceinline__ uint32_t q_pair(const bf16* p) {
  const uint32_t v = ld_u32(p);
  if constexpr (kF16) {
    constexpr float kMax = 65504.0f;
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
    return pack_input<true>(fminf(fmaxf(f.x, -kMax), kMax), fminf(fmaxf(f.y, -kMax), kMax));
  } else {
    return v;
  }
}

// Two adjacent fp8 elements as f16x2 bits, one exact conversion.
__device__ __forceinline__ uint32_t fp8_pair_f16(__nv_fp8x2_storage_t v) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(v, __NV_E4M3);
  return static_cast<uint32_t>(h.x) | static_cast<uint32_t>(h.y) << 16;
}

// Two adjacent fp8 K elements as one f16x2 B-fragment register (bf16 K's
// fragments come by ldmatrix).
__device__ __forceinline__ uint32_t k_pair(const fp8* p) {
  return fp8_pair_f16(*reinterpret_cast<const __nv_fp8x2_storage_t*>(p));
}

// The cache slot of key k0 when the tile [k0, k0 + kKeys) lies in one cache
// block (k0 is a multiple of kKeys, so it does when the block size is too), else
// -1: the loader then looks each key up. Computed ahead of the copy, so that
// the table load's latency is not paid right before the copy is issued.
template <int kKeys>
__device__ __forceinline__ int64_t tile_first_slot(const AttentionParams& p, const int32_t* table,
                                                   int k0, int kend) {
  if (p.block_size % kKeys != 0 || k0 >= kend) return -1;
  return static_cast<int64_t>(table[k0 / p.block_size]) * p.block_size + k0 % p.block_size;
}

// Elements of cache type C in one 16-byte copy; a tile row as stored in shared
// memory is D of them plus 16 bytes of padding (rows 16 bytes apart in banks).
template <typename C>
constexpr int kPerChunk = 16 / static_cast<int>(sizeof(C));
template <int D, typename C>
constexpr int kRawStride = D + kPerChunk<C>;

// Shared memory of one tile set: two stages of (K, V) tiles of kKeys keys as the
// cache stores them, and for an fp8 cache one V tile converted to f16 (the
// tensor-core step reads K's fragments straight from the fp8 stage, converting
// in registers; V's come by ldmatrix.trans, which needs 16-bit elements).
template <int D, typename C, int kKeys>
struct TileSet {
  static constexpr int kRaw = kKeys * kRawStride<D, C> * static_cast<int>(sizeof(C));
  static constexpr int kConv =
      sizeof(C) == 1 ? kKeys * (D + kPad) * static_cast<int>(sizeof(Bits16)) : 0;
  static constexpr int kBytes = 2 * 2 * kRaw + kConv;
  __device__ static C* stage_k(char* base, int s) {
    return reinterpret_cast<C*>(base + 2 * s * kRaw);
  }
  __device__ static C* stage_v(char* base, int s) {
    return reinterpret_cast<C*>(base + (2 * s + 1) * kRaw);
  }
  __device__ static Bits16* conv_v(char* base) {
    return reinterpret_cast<Bits16*>(base + 4 * kRaw);
  }
  // The tiles the tensor-core step reads for landed stage s: K as stored (rows
  // of kRawStride), and V as a 16-bit tile: the stage itself, or (fp8) the
  // stage's V converted by kLanes threads, then `sync`.
  template <int kLanes, typename Sync>
  __device__ static void mma_tiles(char* base, int s, int tid, Sync sync, const C*& ks,
                                   const Bits16*& vs);
};

// Copies keys [k0, k0 + kKeys) of kv head h of one sequence into ks / vs (rows
// of kRawStride); keys >= kend become zeros, so masked keys never bring NaN or
// garbage from slots nobody wrote into P.V. first_slot: see tile_first_slot.
template <int D, int kKeys, int kLanes, typename C>
__device__ __forceinline__ void load_tile(C* ks, C* vs, const AttentionParams& p,
                                          const int32_t* table, int h, int k0, int kend,
                                          int64_t first_slot, int tid) {
  constexpr int kPer = kPerChunk<C>;
  constexpr int kChunks = D / kPer;
  constexpr int kStride = kRawStride<D, C>;
  const C* k_cache = static_cast<const C*>(p.k_cache);
  const C* v_cache = static_cast<const C*>(p.v_cache);
#pragma unroll 4
  for (int c = tid; c < kKeys * kChunks; c += kLanes) {
    const int r = c / kChunks, col = (c % kChunks) * kPer;
    const int key = k0 + r;
    const bool valid = key < kend;
    int64_t off = 0;
    if (valid) {
      const int64_t slot =
          first_slot >= 0
              ? first_slot + r
              : static_cast<int64_t>(table[key / p.block_size]) * p.block_size + key % p.block_size;
      off = (slot * p.kv_heads + h) * D + col;
    }
    cp_async16(ks + r * kStride + col, k_cache + off, valid);
    cp_async16(vs + r * kStride + col, v_cache + off, valid);
  }
}

// An fp8 tile as landed (rows of kRawStride) -> f16 rows of D + kPad, exact.
// 16 values a thread and step.
template <int D, int kKeys, int kLanes>
__device__ __forceinline__ void convert_tile(const fp8* src, Bits16* dst, int tid) {
  constexpr int kChunks = D / 16;
#pragma unroll 1
  for (int c = tid; c < kKeys * kChunks; c += kLanes) {
    const int r = c / kChunks, col = (c % kChunks) * 16;
    const uint4 raw = *reinterpret_cast<const uint4*>(src + r * kRawStride<D, fp8> + col);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    uint32_t out[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = fp8_pair_f16(static_cast<__nv_fp8x2_storage_t>(words[i] & 0xffffu));
      out[2 * i + 1] = fp8_pair_f16(static_cast<__nv_fp8x2_storage_t>(words[i] >> 16));
    }
    uint4* d = reinterpret_cast<uint4*>(dst + r * (D + kPad) + col);
    d[0] = make_uint4(out[0], out[1], out[2], out[3]);
    d[1] = make_uint4(out[4], out[5], out[6], out[7]);
  }
}

template <int D, typename C, int kKeys>
template <int kLanes, typename Sync>
__device__ void TileSet<D, C, kKeys>::mma_tiles(char* base, int s, int tid, Sync sync, const C*& ks,
                                                const Bits16*& vs) {
  ks = stage_k(base, s);
  if constexpr (sizeof(C) == 1) {
    convert_tile<D, kKeys, kLanes>(stage_v(base, s), conv_v(base), tid);
    sync();
    vs = conv_v(base);
  } else {
    vs = reinterpret_cast<const Bits16*>(stage_v(base, s));
  }
}

// One warp's 16 rows: q as mma A fragments, the running output (C fragments of
// D/8 n-tiles), and the softmax state of rows lane/4 and lane/4 + 8.
template <int D>
struct WarpRows {
  uint32_t q[D / 16][4];
  float o[D / 8][4];
  float m[2];  // running max (base-2 scores); -inf before any key
  float l[2];  // running sum of this lane's share of the row (quad-reduced at the end)
  int pos[2];  // the row's query position; -1 for padding rows (attend nothing)
  int64_t tok[2];
  int head[2];
};

// Rows [row_base, row_base + 16) of the sequence whose tokens start at tok0;
// rows >= row_end are padding. q in the tensor cores' input type (kF16Mma).
template <int D, bool kF16>
__device__ __forceinline__ void load_rows(WarpRows<D>& w, const AttentionParams& p, int tok0,
                                          int row_base, int row_end, int h, int group, int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_base + (lane >> 2) + 8 * r;
    const bool valid = row < row_end;
    w.tok[r] = tok0 + row / group;
    w.head[r] = h * group + row % group;
    w.pos[r] = valid ? p.positions[w.tok[r]] : -1;
    w.m[r] = kNegInf;
    w.l[r] = 0.0f;
    const bf16* q =
        p.qkv + w.tok[r] * p.qkv_stride + static_cast<int64_t>(w.head[r]) * D + (lane & 3) * 2;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      w.q[kk][r] = valid ? q_pair<kF16>(q + kk * 16) : 0u;          // a0 / a1: columns k..k+1
      w.q[kk][r + 2] = valid ? q_pair<kF16>(q + kk * 16 + 8) : 0u;  // a2 / a3: columns k+8..k+9
    }
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) w.o[n][e] = 0.0f;
}

// Attends the warp's rows over one smem tile of kKeys keys starting at key k0:
// K in the cache's type C (rows of kRawStride), V in the input type (rows of
// D + kPad).
// kMask: some key of the tile lies past a row's position or past kend (the
// tile on the causal diagonal, or the last one); a tile every row sees whole
// skips the per-score test.
template <int D, int kKeys, typename C, bool kMask = true>
__device__ __forceinline__ void attend_tile(WarpRows<D>& w, const C* ks, const Bits16* vs, int k0,
                                            int kend, float scale_log2, int lane) {
  constexpr int kStride = D + kPad;
  constexpr int kKStride = kRawStride<D, C>;
  constexpr int kN = kKeys / 8;
  float s[kN][4];
#pragma unroll
  for (int j = 0; j < kN; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
      // S = Q K^T: B[k = dim][n = key] is K's row-major rows, two dims per 32-bit load.
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    if constexpr (sizeof(C) == 2) {
      static_assert(kN % 2 == 0, "bf16 tiles of whole 16-key pairs");
      // bf16: K's rows are B's columns as stored, so one ldmatrix.x4 gives the
      // fragments of two 8-key n-tiles (matrices: keys j / j + 1 x dims 0-7 / 8-15).
#pragma unroll
      for (int j = 0; j < kN; j += 2) {
        const int mi = lane >> 3;
        uint32_t b[4];
        ldsm_x4(b, reinterpret_cast<const Bits16*>(ks) +
                       ((j + (mi >> 1)) * 8 + (lane & 7)) * kKStride + kk * 16 + (mi & 1) * 8);
        mma16816<false>(s[j], w.q[kk], b[0], b[1]);
        mma16816<false>(s[j + 1], w.q[kk], b[2], b[3]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        // Conflict-free: the 8 keys' rows start in 8 distinct bank groups.
        const C* kp = ks + (j * 8 + (lane >> 2)) * kKStride + kk * 16 + (lane & 3) * 2;
        mma16816<true>(s[j], w.q[kk], k_pair(kp), k_pair(kp + 8));
      }
    }
  }
  // Scale, causal mask, tile row max (over the quad that shares a row).
  float tmax[2] = {kNegInf, kNegInf};
#pragma unroll
  for (int j = 0; j < kN; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = k0 + j * 8 + (lane & 3) * 2 + (e & 1);
      const int r = e >> 1;
      const float v = (!kMask || (key <= w.pos[r] && key < kend)) ? s[j][e] * scale_log2 : kNegInf;
      s[j][e] = v;
      tmax[r] = fmaxf(tmax[r], v);
    }
  float alpha[2], base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
    tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
    const float m_new = fmaxf(w.m[r], tmax[r]);
    // A row with no key yet keeps m = -inf: subtract 0 instead (exp2(-inf) = 0).
    base[r] = m_new == kNegInf ? 0.0f : m_new;
    alpha[r] = exp2f(w.m[r] - base[r]);
    w.m[r] = m_new;
  }
  float rsum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < kN; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float pe = exp2f(s[j][e] - base[e >> 1]);
      s[j][e] = pe;
      rsum[e >> 1] += pe;
    }
#pragma unroll
  for (int r = 0; r < 2; ++r) w.l[r] = w.l[r] * alpha[r] + rsum[r];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    w.o[n][0] *= alpha[0];
    w.o[n][1] *= alpha[0];
    w.o[n][2] *= alpha[1];
    w.o[n][3] *= alpha[1];
  }
  // O += P V: the S accumulators of two adjacent key n-tiles are exactly the A
  // fragment of one 16-key k-step; V's B fragments come transposed by ldmatrix.
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    constexpr bool kF16 = kF16Mma<C>;
    const uint32_t a[4] = {pack_input<kF16>(s[2 * kk][0], s[2 * kk][1]),
                           pack_input<kF16>(s[2 * kk][2], s[2 * kk][3]),
                           pack_input<kF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                           pack_input<kF16>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
    const Bits16* vrow =
        vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + (lane >> 4) * 8;
#pragma unroll
    for (int nn = 0; nn < D / 16; ++nn) {
      uint32_t b[4];
      ldsm_x4_trans(b, vrow + nn * 16);
      mma16816<kF16>(w.o[2 * nn], a, b[0], b[1]);
      mma16816<kF16>(w.o[2 * nn + 1], a, b[2], b[3]);
    }
  }
}

// The complete row sums (each lane holds a quarter of its rows' terms).
template <int D>
__device__ __forceinline__ void reduce_row_sums(WarpRows<D>& w) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    w.l[r] += __shfl_xor_sync(0xffffffffu, w.l[r], 1);
    w.l[r] += __shfl_xor_sync(0xffffffffu, w.l[r], 2);
  }
}

// The warp's rows out, normalized: o / l (o, l: the rows' outputs and full
// sums, w's or a folded total's). The batch-invariant fold kernel divides the
// same way (1 / l, then a product), so both give a row the same bits.
template <int D>
__device__ __forceinline__ void store_rows(const float (&o)[D / 8][4], const float (&l)[2],
                                           const WarpRows<D>& w, const AttentionParams& p,
                                           int lane) {
  const int64_t out_stride = static_cast<int64_t>(p.q_heads) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (w.pos[r] < 0) continue;
    const float inv = 1.0f / l[r];
    bf16* out =
        p.out + w.tok[r] * out_stride + static_cast<int64_t>(w.head[r]) * D + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(out + n * 8) =
          pack_bf16(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
  }
}

// ---- batch-invariant mode's key chunks (AttentionPlan::chunk_keys)
//
// A row's chunk state is (m, l, o) over the chunk's keys, l quad-reduced; l = 0
// means the row sees no key of the chunk. States fold in chunk order, the
// first one with a key copied as it is; the same operations, with explicit
// roundings (no FMA contraction that could differ between kernels), in the
// folding prefill kernel and in the fold kernel of split items.
struct FoldWeights {
  float a, b;
};
// Folds (mc, lc) into (m, l), both with keys; returns the weights of the outputs.
__device__ __forceinline__ FoldWeights fold_state(float& m, float& l, float mc, float lc) {
  const float mn = fmaxf(m, mc);
  const FoldWeights f{exp2f(__fsub_rn(m, mn)), exp2f(__fsub_rn(mc, mn))};
  l = __fadd_rn(__fmul_rn(l, f.a), __fmul_rn(lc, f.b));
  m = mn;
  return f;
}
__device__ __forceinline__ float fold_output(float o, float oc, FoldWeights f) {
  return __fadd_rn(__fmul_rn(o, f.a), __fmul_rn(oc, f.b));
}

// The fold of a warp's finished chunks so far (l = 0: none with a key yet):
// (m, l) in registers, the outputs in the warp's shared memory (touched once
// a chunk, and registers are full: kept there they spilled), row-major with
// rows kTotalStride floats apart. Each lane reads back only what it wrote.
template <int D>
constexpr int kTotalStride = D + 4;
template <int D>
constexpr size_t kTotalBytes = 4 * 16 * kTotalStride<D> * sizeof(float);  // four warps
template <int D>
struct ChunkTotal {
  float* o;  // this warp's 16 rows
  float m[2], l[2];
};

// Where lane's output element (n, 2 r + e) of the warp's rows lies in a total.
template <int D>
__device__ __forceinline__ int total_index(int n, int r, int lane) {
  return ((lane >> 2) + 8 * r) * kTotalStride<D> + n * 8 + (lane & 3) * 2;
}

// Ends the warp's current chunk: its states (sums quad-reduced) fold into t,
// and w starts the next chunk from nothing.
template <int D>
__device__ __forceinline__ void end_chunk(WarpRows<D>& w, ChunkTotal<D>& t, int lane) {
  reduce_row_sums(w);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (w.l[r] == 0.0f) continue;  // no key of this chunk is the row's
    if (t.l[r] == 0.0f) {
      t.m[r] = w.m[r];
      t.l[r] = w.l[r];
#pragma unroll
      for (int n = 0; n < D / 8; ++n)
        *reinterpret_cast<float2*>(t.o + total_index<D>(n, r, lane)) =
            make_float2(w.o[n][2 * r], w.o[n][2 * r + 1]);
    } else {
      const FoldWeights f = fold_state(t.m[r], t.l[r], w.m[r], w.l[r]);
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        float2* o = reinterpret_cast<float2*>(t.o + total_index<D>(n, r, lane));
        const float2 v = *o;
        *o =
            make_float2(fold_output(v.x, w.o[n][2 * r], f), fold_output(v.y, w.o[n][2 * r + 1], f));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    w.m[r] = kNegInf;
    w.l[r] = 0.0f;
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) w.o[n][e] = 0.0f;
}

// The total's outputs back into w's registers (w is done), for store_rows.
template <int D>
__device__ __forceinline__ void load_total(WarpRows<D>& w, const ChunkTotal<D>& t, int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const float2 v = *reinterpret_cast<const float2*>(t.o + total_index<D>(n, r, lane));
      w.o[n][2 * r] = v.x;
      w.o[n][2 * r + 1] = v.y;
    }
}

// Entry (item, h, row, chunk) of chunk_state: outputs at [entry * D], (m, l) at
// [entries * D + 2 * entry].
__device__ __forceinline__ int64_t chunk_entry(const AttentionPlan& plan, int kv_heads, int item,
                                               int h, int row, int chunk) {
  return ((static_cast<int64_t>(item) * kv_heads + h) * plan.split_row_stride + row) *
             plan.split_chunks +
         chunk;
}
__device__ __forceinline__ int64_t chunk_entries(const AttentionPlan& plan, int kv_heads) {
  return static_cast<int64_t>(plan.n_split) * kv_heads * plan.split_row_stride * plan.split_chunks;
}

// A split item's chunk (this block's) left in chunk_state, sums quad-reduced.
template <int D>
__device__ __forceinline__ void store_chunk_state(WarpRows<D>& w, const AttentionPlan& plan,
                                                  const AttentionParams& p, int row_base, int h,
                                                  int chunk, int lane) {
  reduce_row_sums(w);
  const int64_t entries = chunk_entries(plan, p.kv_heads);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (w.pos[r] < 0) continue;
    const int row = row_base + (lane >> 2) + 8 * r;
    const int64_t e = chunk_entry(plan, p.kv_heads, blockIdx.x, h, row, chunk);
    float* o = plan.chunk_state + e * D + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n * 8] = w.o[n][2 * r];
      o[n * 8 + 1] = w.o[n][2 * r + 1];
    }
    if ((lane & 3) == 0) {
      plan.chunk_state[entries * D + 2 * e] = w.m[r];
      plan.chunk_state[entries * D + 2 * e + 1] = w.l[r];
    }
  }
}

// prefill: one tile set of 64 keys for the block; decode: one of 16 keys a warp.
template <int D, typename C>
using PrefillTiles = TileSet<D, C, kPrefillKeys>;
template <int D, typename C>
using DecodeTiles = TileSet<D, C, kDecodeKeys>;

template <int D, typename C>
constexpr size_t tile_smem_bytes() {
  static_assert(PrefillTiles<D, C>::kBytes == 4 * DecodeTiles<D, C>::kBytes,
                "both kernels use one smem size");
  static_assert(4 * 16 * D * 4 + 2 * 4 * 16 * 4 <= PrefillTiles<D, C>::kBytes,
                "the decode warps' merge fits in the tile buffers");
  return PrefillTiles<D, C>::kBytes;
}

// How a prefill launch goes over its items' keys (AttentionPlan::chunk_keys):
// whole: one softmax state over all of them (the default mode, and the
// batch-invariant mode when no item has a second chunk); folded: a state per
// chunk, folded in registers; one_chunk: block z does chunk z of a split item
// and leaves its state in chunk_state.
enum class KeyPass { whole, folded, one_chunk };

// C: the cache's element type (bf16; or fp8: K converted in registers, V to f16 tiles).
template <int D, typename C, KeyPass kPass>
__global__ void __launch_bounds__(kThreads)
    attn_prefill_kernel(AttentionParams p, AttentionPlan plan, const AttnItem* items) {
  wait_for_prior_grids();
  extern __shared__ uint4 smem_raw[];
  char* tiles = reinterpret_cast<char*>(smem_raw);
  using T = PrefillTiles<D, C>;
  const AttnItem it = items[blockIdx.x];
  const int h = blockIdx.y, group = p.q_heads / p.kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tok0 = p.query_start[it.seq];
  const int32_t* table = p.block_tables + static_cast<int64_t>(it.seq) * p.table_stride;

  const int kend = it.kv_end;
  int t_begin = 0, t_end = (kend + kPrefillKeys - 1) / kPrefillKeys;
  if constexpr (kPass == KeyPass::one_chunk) {
    const int k_begin = static_cast<int>(blockIdx.z) * plan.chunk_keys;
    if (k_begin >= kend) return;  // past the item's keys: the whole block, before any barrier
    t_begin = k_begin / kPrefillKeys;
    t_end = min(t_end, (k_begin + plan.chunk_keys) / kPrefillKeys);
  }

  WarpRows<D> w;
  load_rows<D, kF16Mma<C>>(w, p, tok0, it.row0 + warp * 16, it.row0 + it.nrows, h, group, lane);
  // The warp skips tiles past its last row's position (causal), but keeps to the barriers.
  int wmax = max(w.pos[0], w.pos[1]);
  // The first position of the warp's real rows (padding rows, pos -1, attend
  // nothing and are never stored: whatever they compute is dropped).
  int wmin = min(w.pos[0] < 0 ? INT_MAX : w.pos[0], w.pos[1] < 0 ? INT_MAX : w.pos[1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  }
  ChunkTotal<D> total;
  if constexpr (kPass == KeyPass::folded) {
    // After the tile sets (launched with their bytes and kTotalBytes).
    total.o =
        reinterpret_cast<float*>(tiles + tile_smem_bytes<D, C>()) + warp * 16 * kTotalStride<D>;
#pragma unroll
    for (int r = 0; r < 2; ++r) total.m[r] = total.l[r] = 0.0f;
  }
  const int chunk_tiles = kPass == KeyPass::folded ? plan.chunk_keys / kPrefillKeys : 0;

  const int first = t_begin * kPrefillKeys;
  load_tile<D, kPrefillKeys, kThreads>(
      T::stage_k(tiles, 0), T::stage_v(tiles, 0), p, table, h, first, kend,
      tile_first_slot<kPrefillKeys>(p, table, first, kend), threadIdx.x);
  cp_async_commit();
  for (int i = t_begin; i < t_end; ++i) {
    const int stage = (i - t_begin) & 1;
    if (i + 1 < t_end) {
      const int k0 = (i + 1) * kPrefillKeys;
      load_tile<D, kPrefillKeys, kThreads>(
          T::stage_k(tiles, stage ^ 1), T::stage_v(tiles, stage ^ 1), p, table, h, k0, kend,
          tile_first_slot<kPrefillKeys>(p, table, k0, kend), threadIdx.x);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const C* ks;
    const Bits16* vs;
    T::template mma_tiles<kThreads>(
        tiles, stage, threadIdx.x, [] { __syncthreads(); }, ks, vs);
    const int k0 = i * kPrefillKeys, k_last = k0 + kPrefillKeys - 1;
    if (k0 <= wmax) {
      if (k_last <= wmin && k_last < kend)
        attend_tile<D, kPrefillKeys, C, false>(w, ks, vs, k0, kend, p.scale_log2, lane);
      else
        attend_tile<D, kPrefillKeys, C, true>(w, ks, vs, k0, kend, p.scale_log2, lane);
    }
    __syncthreads();  // the next iteration's copy overwrites this stage (and conversion)
    if constexpr (kPass == KeyPass::folded) {
      if ((i + 1) % chunk_tiles == 0 || i + 1 == t_end) end_chunk(w, total, lane);
    }
  }
  if constexpr (kPass == KeyPass::whole) {
    reduce_row_sums(w);
    store_rows(w.o, w.l, w, p, lane);
  } else if constexpr (kPass == KeyPass::folded) {
    load_total(w, total, lane);
    store_rows(w.o, total.l, w, p, lane);
  } else {
    store_chunk_state(w, plan, p, warp * 16, h, static_cast<int>(blockIdx.z), lane);
  }
}

// Merges the splits of one decode item's rows at kv head h:
// out = sum_z 2^(lse_z - M) o_z / sum_z 2^(lse_z - M). The weights of a row's
// splits go to shared memory first (one warp a row), so the per-element loop
// is a plain dot over splits with loads kept in flight. The partials come from
// other blocks of this grid: read through L2 (ld.cg), never a stale L1 line.
__device__ void merge_splits(const AttentionParams& p, const AttentionPlan& plan, int item, int h,
                             float (*weight)[kMaxSplits]) {
  const AttnItem it = plan.decode_items[item];
  const int group = p.q_heads / p.kv_heads, d_all = p.head_dim;
  const int splits = plan.splits;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  // Row r's splits are at base + r * splits + z (see the decode kernel).
  const int64_t base = (static_cast<int64_t>(item) * p.kv_heads + h) * kDecodeRows * splits;
  for (int row = warp; row < it.nrows; row += warps) {
    const float* lse = plan.partial_lse + base + static_cast<int64_t>(row) * splits;
    float mx = kNegInf;
    for (int z = lane; z < splits; z += 32) mx = fmaxf(mx, __ldcg(lse + z));
    mx = warp_max(mx);  // finite: split 0 holds key 0, which every row attends
    float den = 0.0f;
    for (int z = lane; z < splits; z += 32) den += exp2f(__ldcg(lse + z) - mx);  // -inf -> 0
    den = warp_sum(den);
    for (int z = lane; z < splits; z += 32) weight[row][z] = exp2f(__ldcg(lse + z) - mx) / den;
  }
  __syncthreads();
  const int tok0 = p.query_start[it.seq];
  const int64_t out_stride = static_cast<int64_t>(p.q_heads) * d_all;
  for (int idx = threadIdx.x; idx < it.nrows * d_all; idx += blockDim.x) {
    const int row = idx / d_all, d = idx % d_all;
    const float* po = plan.partial_o + (base + static_cast<int64_t>(row) * splits) * d_all + d;
    float acc = 0.0f;
#pragma unroll 8
    for (int z = 0; z < splits; ++z)
      acc += weight[row][z] * __ldcg(po + static_cast<int64_t>(z) * d_all);
    const int r = it.row0 + row;
    const int64_t tok = tok0 + r / group;
    const int head = h * group + r % group;
    p.out[tok * out_stride + static_cast<int64_t>(head) * d_all + d] = __float2bfloat16(acc);
  }
}

template <int D, typename C>
__global__ void __launch_bounds__(kThreads)
    attn_decode_kernel(AttentionParams p, AttentionPlan plan) {
  wait_for_prior_grids();
  extern __shared__ uint4 smem_raw[];
  using T = DecodeTiles<D, C>;
  constexpr int kWarps = kThreads / 32;
  const int item = plan.head_major ? blockIdx.y : blockIdx.x;
  const AttnItem it = plan.decode_items[item];
  const int h = plan.head_major ? blockIdx.x : blockIdx.y;
  const int split = blockIdx.z, group = p.q_heads / p.kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tok0 = p.query_start[it.seq];
  const int32_t* table = p.block_tables + static_cast<int64_t>(it.seq) * p.table_stride;

  // This block's keys; warp k takes tiles k, k + 4, ... of them. The first
  // copy goes out before the q loads, so the two latencies overlap; each
  // tile's table entry is read one iteration ahead of its copy.
  const int chunk = decode_split_chunk(it.kv_end, plan.splits);
  const int k_begin = split * chunk;
  const int k_end = min(it.kv_end, k_begin + chunk);
  const int first = k_begin + warp * kDecodeKeys, step = kWarps * kDecodeKeys;
  const int tiles = first < k_end ? (k_end - first + step - 1) / step : 0;
  char* mine = reinterpret_cast<char*>(smem_raw) + warp * T::kBytes;  // this warp's tile set
  if (tiles > 0) {
    load_tile<D, kDecodeKeys, 32>(T::stage_k(mine, 0), T::stage_v(mine, 0), p, table, h, first,
                                  k_end, tile_first_slot<kDecodeKeys>(p, table, first, k_end),
                                  lane);
    cp_async_commit();
  }
  int64_t next_slot = tile_first_slot<kDecodeKeys>(p, table, first + step, k_end);

  WarpRows<D> w;
  load_rows<D, kF16Mma<C>>(w, p, tok0, it.row0, it.row0 + it.nrows, h, group, lane);

  for (int i = 0; i < tiles; ++i) {
    if (i + 1 < tiles) {
      const int s = (i + 1) & 1;
      load_tile<D, kDecodeKeys, 32>(T::stage_k(mine, s), T::stage_v(mine, s), p, table, h,
                                    first + (i + 1) * step, k_end, next_slot, lane);
      cp_async_commit();
      next_slot = tile_first_slot<kDecodeKeys>(p, table, first + (i + 2) * step, k_end);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();  // every lane's copies of this stage have landed
    const C* ks;
    const Bits16* vs;
    T::template mma_tiles<32>(
        mine, i & 1, lane, [] { __syncwarp(); }, ks, vs);
    attend_tile<D, kDecodeKeys, C>(w, ks, vs, first + i * step, k_end, p.scale_log2, lane);
    __syncwarp();  // before the next copy (or conversion) overwrites it
  }
  reduce_row_sums(w);

  // Merge the four warps' states of each row through shared memory (the tile
  // buffers are free now): [warp][row][D] outputs, then [warp][row] max and sum.
  __syncthreads();
  float* so = reinterpret_cast<float*>(smem_raw);
  float* sm = so + kWarps * 16 * D;
  float* sl = sm + kWarps * 16;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = (lane >> 2) + 8 * r;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      float* dst = so + (warp * 16 + row) * D + n * 8 + (lane & 3) * 2;
      dst[0] = w.o[n][2 * r];
      dst[1] = w.o[n][2 * r + 1];
    }
    if ((lane & 3) == 0) {
      sm[warp * 16 + row] = w.m[r];
      sl[warp * 16 + row] = w.l[r];
    }
  }
  __syncthreads();
  const int64_t out_stride = static_cast<int64_t>(p.q_heads) * D;
  for (int idx = threadIdx.x; idx < it.nrows * D; idx += kThreads) {
    const int row = idx / D, d = idx % D;
    float mx = kNegInf;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) mx = fmaxf(mx, sm[k * 16 + row]);
    float num = 0.0f, den = 0.0f;
    if (mx != kNegInf) {
#pragma unroll
      for (int k = 0; k < kWarps; ++k) {
        const float f = exp2f(sm[k * 16 + row] - mx);
        num += f * so[(k * 16 + row) * D + d];
        den += f * sl[k * 16 + row];
      }
    }
    if (plan.splits == 1) {
      const int r = it.row0 + row;
      const int64_t tok = tok0 + r / group;
      const int head = h * group + r % group;
      p.out[tok * out_stride + static_cast<int64_t>(head) * D + d] = __float2bfloat16(num / den);
    } else {
      // A split with no keys for this row (a sequence shorter than the split's
      // start) leaves lse = -inf: the merge gives it weight 0.
      const int64_t part =
          ((static_cast<int64_t>(item) * p.kv_heads + h) * kDecodeRows + row) * plan.splits + split;
      plan.partial_o[part * D + d] = den > 0.0f ? num / den : 0.0f;
      if (d == 0) plan.partial_lse[part] = den > 0.0f ? mx + log2f(den) : kNegInf;
    }
  }
  if (plan.splits == 1) return;
  static_assert(sizeof(float) * kDecodeRows * kMaxSplits <= 4 * T::kBytes,
                "the merge weights fit in the tile buffers");
  // The last of the item's splits to finish merges them: each block's
  // partials are made visible device-wide before it counts itself.
  __threadfence();
  __syncthreads();
  __shared__ int merges;
  if (threadIdx.x == 0) {
    __threadfence();  // orders the block's stores, seen through the barrier, before the count
    int* count = plan.split_counts + static_cast<int64_t>(item) * p.kv_heads + h;
    merges = atomicAdd(count, 1) == plan.splits - 1;
    if (merges) *count = 0;  // every split has counted: ready for the next launch
  }
  __syncthreads();
  if (!merges) return;
  __threadfence();
  // The tile buffers are free: the merge weights go there.
  merge_splits(p, plan, item, h, reinterpret_cast<float(*)[kMaxSplits]>(smem_raw));
}

// Batch-invariant mode: each split item's rows, their chunk states folded in
// chunk order (fold_state, as the folding prefill kernel does), normalized as
// store_rows does.
__global__ void attn_fold_chunks_kernel(AttentionParams p, AttentionPlan plan,
                                        const AttnItem* items) {
  wait_for_prior_grids();
  const AttnItem it = items[blockIdx.x];
  const int h = blockIdx.y, group = p.q_heads / p.kv_heads, d_all = p.head_dim;
  const int chunks = (it.kv_end + plan.chunk_keys - 1) / plan.chunk_keys;
  const int64_t entries = chunk_entries(plan, p.kv_heads);
  const float* ml = plan.chunk_state + entries * d_all;
  const int tok0 = p.query_start[it.seq];
  const int64_t out_stride = static_cast<int64_t>(p.q_heads) * d_all;
  for (int idx = threadIdx.x; idx < it.nrows * d_all; idx += blockDim.x) {
    const int row = idx / d_all, d = idx % d_all;
    float m = 0.0f, l = 0.0f, o = 0.0f;
    for (int z = 0; z < chunks; ++z) {
      const int64_t e = chunk_entry(plan, p.kv_heads, blockIdx.x, h, row, z);
      const float lc = ml[2 * e + 1];
      if (lc == 0.0f) continue;  // no key of this chunk is the row's
      const float oc = plan.chunk_state[e * d_all + d];
      if (l == 0.0f) {
        m = ml[2 * e];
        l = lc;
        o = oc;
      } else {
        o = fold_output(o, oc, fold_state(m, l, ml[2 * e], lc));
      }
    }
    const float inv = 1.0f / l;
    const int r = it.row0 + row;
    const int64_t tok = tok0 + r / group;
    const int head = h * group + r % group;
    p.out[tok * out_stride + static_cast<int64_t>(head) * d_all + d] = __float2bfloat16(o * inv);
  }
}

template <int D, typename C>
void init_for(bool deterministic) {
  constexpr size_t smem = tile_smem_bytes<D, C>();
  TPINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D, C, KeyPass::whole>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // Only the batch-invariant mode folds chunks (and needs more than some GPUs
  // give a block: attention_folded_smem_bytes).
  if (deterministic)
    TPINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D, C, KeyPass::folded>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            smem + kTotalBytes<D>));
  TPINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D, C, KeyPass::one_chunk>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  TPINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<D, C>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
}

// The decode items first (on decode_stream, which may run beside `stream`),
// then the prefill items.
template <int D, typename C>
void launch_for(const AttentionParams& p, const AttentionPlan& plan, cudaStream_t stream,
                cudaStream_t decode_stream) {
  constexpr size_t smem = tile_smem_bytes<D, C>();
  const unsigned kvh = static_cast<unsigned>(p.kv_heads);
  if (plan.n_decode > 0) {
    const unsigned items = static_cast<unsigned>(plan.n_decode);
    const dim3 grid =
        plan.head_major ? dim3(kvh, items, plan.splits) : dim3(items, kvh, plan.splits);
    launch_kernel(attn_decode_kernel<D, C>, grid, kThreads, smem, decode_stream, p, plan);
  }
  // Batch-invariant mode's split items first (their chunks, then the fold), then the rest.
  if (plan.n_split > 0) {
    const unsigned n = static_cast<unsigned>(plan.n_split);
    launch_kernel(attn_prefill_kernel<D, C, KeyPass::one_chunk>,
                  dim3(n, kvh, static_cast<unsigned>(plan.split_chunks)), kThreads, smem, stream, p,
                  plan, plan.prefill_items);
    launch_kernel(attn_fold_chunks_kernel, dim3(n, kvh), kThreads, 0, stream, p, plan,
                  plan.prefill_items);
  }
  if (plan.n_prefill > plan.n_split) {
    const dim3 grid(static_cast<unsigned>(plan.n_prefill - plan.n_split), kvh);
    const AttnItem* rest = plan.prefill_items + plan.n_split;
    if (plan.others_chunked)
      launch_kernel(attn_prefill_kernel<D, C, KeyPass::folded>, grid, kThreads,
                    smem + kTotalBytes<D>, stream, p, plan, rest);
    else if (D == 128 && sizeof(C) == 2 && plan.prefill_wgmma && plan.chunk_keys == 0)
      launch_attention_wgmma_prefill(p, rest, plan.n_prefill - plan.n_split, stream);
    else
      launch_kernel(attn_prefill_kernel<D, C, KeyPass::whole>, grid, kThreads, smem, stream, p,
                    plan, rest);
  }
}

}  // namespace

bool attention_mma_supported(int head_dim) {
  return head_dim == 64 || head_dim == 128;
}

void attention_init(bool deterministic) {
  init_for<64, bf16>(deterministic);
  init_for<128, bf16>(deterministic);
  init_for<64, fp8>(deterministic);
  init_for<128, fp8>(deterministic);
}

size_t attention_folded_smem_bytes() {
  return std::max({tile_smem_bytes<64, bf16>() + kTotalBytes<64>,
                   tile_smem_bytes<128, bf16>() + kTotalBytes<128>,
                   tile_smem_bytes<64, fp8>() + kTotalBytes<64>,
                   tile_smem_bytes<128, fp8>() + kTotalBytes<128>});
}

void launch_attention_mma(const AttentionParams& p, const AttentionPlan& plan, cudaStream_t stream,
                          cudaStream_t decode_stream) {
  switch (p.head_dim) {
    case 64:
      p.fp8_cache ? launch_for<64, fp8>(p, plan, stream, decode_stream)
                  : launch_for<64, bf16>(p, plan, stream, decode_stream);
      break;
    case 128:
      p.fp8_cache ? launch_for<128, fp8>(p, plan, stream, decode_stream)
                  : launch_for<128, bf16>(p, plan, stream, decode_stream);
      break;
    default:
      throw_cuda_error(static_cast<int>(cudaErrorInvalidValue), "launch_attention_mma(head_dim)",
                       __FILE__, __LINE__);
  }
}

}  // namespace tpinfer::cuda
