// Paged causal prefill attention on Hopper's warpgroup MMA (wgmma.mma_async,
// sm_90a), flash-attention style without warp specialization: an alternative
// to attention_mma.cu's attn_prefill_kernel<128, bf16, KeyPass::whole>, chosen
// by --cuda-prefill-attention wgmma (CudaBackendOptions::prefill_attention) for a
// bf16 cache at head_dim 128 outside the batch-invariant mode.
//
// Same items, rows and grid as the mma.sync kernel: block (item, kv head), one
// warpgroup (128 threads) a block, an item's <= 64 rows exactly one wgmma M=64
// tile; warp w holds rows 16 w .. 16 w + 15, lane l rows l / 4 and l / 4 + 8 and
// columns 2 (l % 4) + {0, 1} of every 8-column group of an accumulator (the
// m64nNk16 D fragment, which is mma.sync's C fragment per warp).
//
// Per 64-key tile:
//   S = Q K^T: 8 x wgmma m64n64k16, A = Q and B = K both from shared memory,
//     K-major (head dims contiguous), 128-byte swizzled.
//   online softmax in registers (base 2, as the mma.sync kernel).
//   O += P V: 4 x wgmma m64n128k16, A = P from registers (the S accumulators of
//     16 keys, rounded to bf16, are exactly the A fragment of a k16 step), B = V
//     from shared memory, MN-major (dims contiguous; the transpose bit).
//
// Shared memory (1024-byte aligned: the 128-byte swizzle is a function of the
// address bits, see swz): Q (64 rows), then two stages of (K, V) tiles of 64
// keys. Every tile is rows of 128 dims = 256 bytes, stored as two column halves
// (dims 0-63, then dims 64-127), each half rows of 128 bytes, 8-row atoms of
// 1024 bytes, the 16-byte chunk c of row r at chunk position c ^ (r % 8):
// the canonical SW128 layout, K-major for Q and K, MN-major for V (there a
// "row" is one key = one k index, 64 n elements wide).
//
// Its tests pass on an H100 (docs/CUDA_BACKEND.md, --cuda-prefill-attention).
#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

// wgmma needs the architecture-specific target (sm_90a); elsewhere the kernel
// traps (the backend refuses the option on other GPUs).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TPINFER_WGMMA_ARCH 1
#else
#define TPINFER_WGMMA_ARCH 0
#endif

namespace tpinfer::cuda {
namespace {

constexpr int kD = 128;              // head_dim
constexpr int kRows = kPrefillRows;  // 64: one wgmma M tile
constexpr int kWgThreads = 128;      // one warpgroup
constexpr int kKeys = 64;            // keys a tile
constexpr int kHalfBytes = 128;      // one row of one column half: 64 bf16
constexpr int kQBytes = kRows * kD * 2;
constexpr int kTileBytes = kKeys * kD * 2;  // one K or V tile
constexpr int kAlign = 1024;                // an SW128 atom: 8 rows x 128 bytes
constexpr size_t kWgmmaSmem = kQBytes + 4 * kTileBytes + kAlign;  // + slack to align the base
constexpr float kNegInf = -INFINITY;
static_assert(kRows == 64, "one wgmma M tile an item");

// The generic proxy's writes (cp.async, landed) made visible to the async
// proxy, through which wgmma reads its shared-memory operands.
__device__ __forceinline__ void fence_proxy_async() {
#if TPINFER_WGMMA_ARCH
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if TPINFER_WGMMA_ARCH
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if TPINFER_WGMMA_ARCH
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_wait_all() {
#if TPINFER_WGMMA_ARCH
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}

// Keeps the compiler from touching accumulators before the wgmma that writes
// them has been waited for (an empty asm that "writes" each register, ordered
// after the wait).
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Byte offset of 16-byte chunk c (dims 8c .. 8c + 7, c in 0..15) of row r in a
// swizzled tile of n rows: column half c / 8 (n x 128 bytes each), row r at
// r x 128 in it, the chunk at position (c % 8) ^ (r % 8). With the tile on a
// 1024-byte boundary this is the hardware's 128-byte swizzle (address bits
// 4-6 XOR bits 7-9).
__device__ __forceinline__ uint32_t swz(int r, int c, int n) {
  return static_cast<uint32_t>((c >> 3) * (n * kHalfBytes) + r * kHalfBytes +
                               (((c & 7) ^ (r & 7)) << 4));
}

// A wgmma shared-memory matrix descriptor: start address, leading and stride
// byte offsets (all >> 4, 14 bits each at bits 0, 16, 32), base offset 0 (every
// atom 1024-aligned), swizzle mode 1 = 128-byte at bits 62-63.
__device__ __forceinline__ uint64_t make_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) |
         (static_cast<uint64_t>((lbo >> 4) & 0x3FFFu) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFFu) << 32) | (uint64_t{1} << 62);
}

// d (+)= A B: A = 64 x 16 from smem (desc_a), B = 16 x 64 from smem (desc_b),
// both K-major (no transpose); scale_d 0 ignores d's old values.
__device__ __forceinline__ void wgmma_ss_m64n64k16(float (&d)[32], uint64_t desc_a, uint64_t desc_b,
                                                   int scale_d) {
#if TPINFER_WGMMA_ARCH
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d)
      : "memory");
#else
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
  __trap();
#endif
}

// d += A B: A = 64 x 16 from registers (the m64nNk16 A fragment: a[0..3]),
// B = 16 x 128 from smem (desc_b), MN-major (transposed: imm-trans-b 1).
__device__ __forceinline__ void wgmma_rs_m64n128k16_tb(float (&d)[64], const uint32_t (&a)[4],
                                                       uint64_t desc_b) {
#if TPINFER_WGMMA_ARCH
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b)
      : "memory");
#else
  (void)d, (void)a, (void)desc_b;
  __trap();
#endif
}

// Copies keys [k0, k0 + kKeys) of kv head h into the swizzled K and V tiles at
// shared addresses ks / vs; keys >= kend become zeros (masked keys never bring
// NaN or garbage from slots nobody wrote into P V). Thread tid copies chunk
// tid % 16 of keys tid / 16 + 8 j: a key's 256 bytes by 16 neighbouring threads.
// (The K / V pair as a loop over two tiles: the same SASS as the kernel measured
// on the H100, whose load was shared with a one-tile variant.)
__device__ __forceinline__ void load_kv(uint32_t ks, uint32_t vs, const AttentionParams& p,
                                        const int32_t* table, int h, int k0, int kend, int tid) {
  const uint32_t dst[2] = {ks, vs};
  const bf16* const cache[2] = {static_cast<const bf16*>(p.k_cache),
                                static_cast<const bf16*>(p.v_cache)};
  const int c = tid & 15;
  // The tile in one cache block: one table entry for all of its keys.
  const bool one_block = p.block_size % kKeys == 0;
  const int64_t first_slot =
      one_block && k0 < kend
          ? static_cast<int64_t>(table[k0 / p.block_size]) * p.block_size + k0 % p.block_size
          : 0;
#pragma unroll
  for (int j = 0; j < kKeys * 16 / kWgThreads; ++j) {
    const int r = (tid >> 4) + j * (kWgThreads / 16);
    const int key = k0 + r;
    const bool valid = key < kend;
    int64_t off = 0;
    if (valid) {
      const int64_t slot =
          one_block
              ? first_slot + r
              : static_cast<int64_t>(table[key / p.block_size]) * p.block_size + key % p.block_size;
      off = (slot * p.kv_heads + h) * kD + c * 8;
    }
    const uint32_t at = swz(r, c, kKeys);
#pragma unroll
    for (int i = 0; i < 2; ++i) cp_async16(dst[i] + at, cache[i] + off, valid);
  }
}

// The warpgroup's P registers: no reordering across this point (an async
// wgmma may still read them before it, or they may be rewritten after it).
__device__ __forceinline__ void fence_p(uint32_t (&pa)[kKeys / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
    for (int q = 0; q < 4; ++q) asm volatile("" : "+r"(pa[kk][q])::"memory");
}

// Issues S = Q K^T (one wgmma group, not waited for) over the 8 16-dim steps
// of head_dim, into softmax_scores' s layout. K-major SW128 operands: start =
// the step's 32 bytes within its column half (the hardware applies the swizzle
// to the computed addresses), SBO = 1024 (8-row atoms of 128-byte rows, one
// after the other), LBO unused for swizzled K-major (16: encoded 1).
__device__ __forceinline__ void issue_qk(float (&s)[kKeys / 2], uint32_t q_s, uint32_t ks) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const uint64_t da = make_desc(q_s + (kk >> 2) * (kRows * kHalfBytes) + (kk & 3) * 32, 16, 1024);
    const uint64_t db = make_desc(ks + (kk >> 2) * (kKeys * kHalfBytes) + (kk & 3) * 32, 16, 1024);
    wgmma_ss_m64n64k16(s, da, db, kk > 0 ? 1 : 0);
  }
  wgmma_commit();
}

// Issues O += P V (one wgmma group, not waited for) over the tile's 4 16-key
// steps, P the A fragments (pack_p). V MN-major SW128 (transposed B): start =
// the step's first key row (2048 bytes a step: two 8-key atoms), SBO = 1024 (the
// next 8 keys), LBO = the second column half (dims 64-127), kKeys rows of 128
// bytes further.
__device__ __forceinline__ void issue_pv(float (&o)[kD / 2], const uint32_t (&pa)[kKeys / 16][4],
                                         uint32_t vs) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    const uint64_t dv = make_desc(vs + kk * 16 * kHalfBytes, kKeys * kHalfBytes, 1024);
    wgmma_rs_m64n128k16_tb(o, pa[kk], dv);
  }
  wgmma_commit();
}

// One tile's scores s (the m64n64 accumulators: s[4 j + e] is row g + 8 (e / 2),
// key k0 + 8 j + 2 t + e % 2 for g = lane / 4, t = lane % 4) -> probabilities in
// place, the rows' running max m and sum l (this lane's share) updated, and
// alpha = the factor the outputs must be scaled by. kMask: some key of the tile
// lies past some row's position or past kend.
template <bool kMask>
__device__ __forceinline__ void softmax_scores(float (&s)[kKeys / 2], float (&m)[2], float (&l)[2],
                                               float (&alpha)[2], const int (&pos)[2], int k0,
                                               int kend, float scale_log2, int lane) {
  float tmax[2] = {kNegInf, kNegInf};
#pragma unroll
  for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = k0 + j * 8 + (lane & 3) * 2 + (e & 1);
      const int r = e >> 1;
      const float v =
          (!kMask || (key <= pos[r] && key < kend)) ? s[4 * j + e] * scale_log2 : kNegInf;
      s[4 * j + e] = v;
      tmax[r] = fmaxf(tmax[r], v);
    }
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
    tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
    const float m_new = fmaxf(m[r], tmax[r]);
    base[r] = m_new == kNegInf ? 0.0f : m_new;
    alpha[r] = exp2f(m[r] - base[r]);
    m[r] = m_new;
  }
  float rsum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int i = 0; i < kKeys / 2; ++i) {
    const float pe = exp2f(s[i] - base[(i >> 1) & 1]);
    s[i] = pe;
    rsum[(i >> 1) & 1] += pe;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + rsum[r];
}

// The outputs o (the m64n128 accumulators) scaled by their rows' alpha.
__device__ __forceinline__ void rescale_rows(float (&o)[kD / 2], const float (&alpha)[2]) {
#pragma unroll
  for (int n = 0; n < kD / 8; ++n) {
    o[4 * n] *= alpha[0];
    o[4 * n + 1] *= alpha[0];
    o[4 * n + 2] *= alpha[1];
    o[4 * n + 3] *= alpha[1];
  }
}

// P in bf16 as the A fragments of the tile's 4 16-key steps: keys 16 kk ..
// 16 kk + 15 are the accumulators of key groups 2 kk and 2 kk + 1 (a0a1: row g
// keys 2t.., a2a3: row g + 8, a4a5 / a6a7: keys 8 + 2t..).
__device__ __forceinline__ void pack_p(const float (&s)[kKeys / 2], uint32_t (&pa)[kKeys / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
    for (int q = 0; q < 4; ++q) pa[kk][q] = pack_bf16(s[8 * kk + 2 * q], s[8 * kk + 2 * q + 1]);
}

// Q of the item's rows into its swizzled tile at q_s (rows past the item's
// zero-filled); the caller commits the copy group.
__device__ __forceinline__ void load_q(uint32_t q_s, const AttentionParams& p, const AttnItem& it,
                                       int h, int group, int tok0, int tid) {
  for (int c = tid; c < kRows * 16; c += kWgThreads) {
    const int r = c >> 4, ch = c & 15;
    const int row = it.row0 + r;
    const bool valid = r < it.nrows;
    const bf16* src = p.qkv;
    if (valid)
      src += (tok0 + row / group) * p.qkv_stride +
             static_cast<int64_t>(h * group + row % group) * kD + ch * 8;
    cp_async16(q_s + swz(r, ch, kRows), src, valid);
  }
}

// This lane's rows: g and g + 8 of the warp's 16 (pos -1: padding).
struct LaneRows {
  int pos[2];
  int64_t tok[2];
  int head[2];
};
__device__ __forceinline__ LaneRows lane_rows(const AttentionParams& p, const AttnItem& it, int h,
                                              int group, int tok0, int warp, int lane) {
  LaneRows rows;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = it.row0 + warp * 16 + (lane >> 2) + 8 * r;
    rows.tok[r] = tok0 + row / group;
    rows.head[r] = h * group + row % group;
    rows.pos[r] = row < it.row0 + it.nrows ? p.positions[rows.tok[r]] : -1;
  }
  return rows;
}

// The first position of the block's real rows: tiles wholly at or before it
// (and before kend) need no mask. Padding rows (pos -1) attend nothing and
// are never stored, so whatever they compute is dropped. post_warp_min before
// a barrier, block_min_of after it.
__device__ __forceinline__ void post_warp_min(const LaneRows& rows, int* block_min, int warp,
                                              int lane) {
  int wmin = min(rows.pos[0] < 0 ? INT_MAX : rows.pos[0], rows.pos[1] < 0 ? INT_MAX : rows.pos[1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  if (lane == 0) block_min[warp] = wmin;
}
__device__ __forceinline__ int block_min_of(const int* block_min) {
  int bmin = block_min[0];
#pragma unroll
  for (int w = 1; w < kWgThreads / 32; ++w) bmin = min(bmin, block_min[w]);
  return bmin;
}

// The rows out, normalized (o / l, l summed over the quad), as store_rows does.
__device__ __forceinline__ void store_out(const float (&o)[kD / 2], float (&l)[2],
                                          const LaneRows& rows, const AttentionParams& p,
                                          int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int64_t out_stride = static_cast<int64_t>(p.q_heads) * kD;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows.pos[r] < 0) continue;
    const float inv = 1.0f / l[r];
    bf16* out =
        p.out + rows.tok[r] * out_stride + static_cast<int64_t>(rows.head[r]) * kD + (lane & 3) * 2;
#pragma unroll
    for (int n = 0; n < kD / 8; ++n)
      *reinterpret_cast<uint32_t*>(out + n * 8) =
          pack_bf16(o[4 * n + 2 * r] * inv, o[4 * n + 2 * r + 1] * inv);
  }
}

__global__ void __launch_bounds__(kWgThreads)
    attn_prefill_wgmma_kernel(AttentionParams p, const AttnItem* items) {
  wait_for_prior_grids();
  extern __shared__ uint4 smem_raw[];
  __shared__ int block_min[kWgThreads / 32];
  // The tiles from the first 1024-byte boundary of the dynamic shared memory.
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t q_s = (raw + (kAlign - 1)) & ~static_cast<uint32_t>(kAlign - 1);
  const uint32_t kv_s = q_s + kQBytes;  // stage s: K at + 2 s kTileBytes, V right after

  const AttnItem it = items[blockIdx.x];
  const int h = blockIdx.y, group = p.q_heads / p.kv_heads;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int tok0 = p.query_start[it.seq];
  const int32_t* table = p.block_tables + static_cast<int64_t>(it.seq) * p.table_stride;
  const int kend = it.kv_end;
  const int tiles = (kend + kKeys - 1) / kKeys;  // kv_end: the item's last position + 1

  // Q, then the first key tile: one copy group.
  load_q(q_s, p, it, h, group, tok0, tid);
  load_kv(kv_s, kv_s + kTileBytes, p, table, h, 0, kend, tid);
  cp_async_commit();

  const LaneRows rows = lane_rows(p, it, h, group, tok0, warp, lane);
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.0f, 0.0f};
  post_warp_min(rows, block_min, warp, lane);
  __syncthreads();
  const int bmin = block_min_of(block_min);

  float o[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) o[i] = 0.0f;
  float s[kKeys / 2];
#pragma unroll
  for (int i = 0; i < kKeys / 2; ++i) s[i] = 0.0f;

  for (int i = 0; i < tiles; ++i) {
    const int stage = i & 1;
    const uint32_t ks = kv_s + 2 * stage * kTileBytes, vs = ks + kTileBytes;
    // Tile i (and at i = 0 Q) is the only copy in flight: landed, made visible
    // to the async proxy, then to every thread. Past the barrier, every thread
    // has also waited for its wgmmas of tile i - 1, so that stage is free.
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();

    issue_qk(s, q_s, ks);
    // The next tile's copy goes out while the tensor cores work.
    if (i + 1 < tiles) {
      const uint32_t nks = kv_s + 2 * (stage ^ 1) * kTileBytes;
      load_kv(nks, nks + kTileBytes, p, table, h, (i + 1) * kKeys, kend, tid);
      cp_async_commit();
    }
    wgmma_wait_all();
    fence_regs(s);

    const int k0 = i * kKeys, k_last = k0 + kKeys - 1;
    float alpha[2];
    if (k_last <= bmin && k_last < kend)
      softmax_scores<false>(s, m, l, alpha, rows.pos, k0, kend, p.scale_log2, lane);
    else
      softmax_scores<true>(s, m, l, alpha, rows.pos, k0, kend, p.scale_log2, lane);
    rescale_rows(o, alpha);

    uint32_t pa[kKeys / 16][4];
    pack_p(s, pa);
    issue_pv(o, pa, vs);
    wgmma_wait_all();
    fence_regs(o);
    fence_p(pa);  // P's registers stay P's until the wgmmas that read them are waited for
  }

  store_out(o, l, rows, p, lane);
}

}  // namespace

void attention_wgmma_init() {
  TPINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_wgmma_kernel,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kWgmmaSmem));
}

void launch_attention_wgmma_prefill(const AttentionParams& p, const AttnItem* items, int n_items,
                                    cudaStream_t stream) {
  if (n_items <= 0) return;
  const dim3 grid(static_cast<unsigned>(n_items), static_cast<unsigned>(p.kv_heads));
  launch_kernel(attn_prefill_wgmma_kernel, grid, kWgThreads, kWgmmaSmem, stream, p, items);
}

}  // namespace tpinfer::cuda
