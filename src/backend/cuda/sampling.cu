// Sampling where the logits are: one block per row draws the token that
// sample_token (base/sampler.cpp) draws from the same row, without sorting.
//
// The candidates' order is the 64-bit key of sampling_math.hpp (smaller
// first). Every question the sampler asks is "where, in key order, does a
// running total first exceed x?" -- for top-k the total counts candidates, for
// top-p and the draw it adds weights. A walk answers it by radix selection:
// eight passes over the row, each a 256-bin histogram of the candidates whose
// key matches the digits chosen so far, then a scan picking the bin where the
// total crosses x. A bin holding one candidate ends the walk early (usually
// after two or three passes).
//
// Determinism (every TP rank draws the same token itself): histograms hold
// integers only -- counts, and weights in fixed point (sampling_math.hpp:
// V = floor(w * 2^(H + 32)) as a 64-bit high part and a 32-bit low part, both
// summed in uint64 without overflow) -- so the atomics' order cannot matter.
// The logprob's normaliser is a double sum in a fixed order.
//
// Precision: the weights are the host sampler's bits and their sums here are
// exact (truncation below 2^-(H+32) per weight, < 2^-62 of a total >= 1), so
// this kernel is the exact-arithmetic version of the host sampler. The host
// sums doubles one at a time, off by at most (n - 1) * 2^-53 of the running
// total; with the roundings of its products and the truncation here, the two
// can choose differently only when the draw (u * mass) or the top-p threshold
// (top_p * total) lies within vocab * 2^-51 of the total weight from a
// boundary between candidates: 5.7e-11 relative at a vocabulary of 128256.
// tests/gpu/test_cuda_sampling.cpp checks both claims.
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"
#include "base/philox.hpp"
#include "base/sampling_math.hpp"

namespace tpinfer::cuda {

namespace {

using sampling::Key;
using sampling::U128;
using ull = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr Key kNoLimit = ~Key{0};

struct Hist {
  uint32_t count[256];
  ull hi[256], lo[256];  // fixed-point weight parts (weighted walks only)
  Key key[256];          // the key of a bin's only candidate (when count == 1)
};

// A walk's state and result, in shared memory (not in registers through the
// passes). prefix: the digits chosen so far; acc: the total of the candidates
// before the current bin. Once found, key is the candidate where the total
// crosses x, acc the total before it and amount its own.
struct Walk {
  U128 x, acc, amount;
  Key prefix, key;
  int state;  // kRunning, kFound, kFailed
};
constexpr int kRunning = 0, kFound = 1, kFailed = 2;

struct Shared {
  Hist level1;  // the weighted first-digit histogram, shared by the top-p and draw walks
  Hist work;
  Walk walk;
  SampleRow q;
  U128 mass;  // the total weight, then that of the nucleus
  ull total_hi, total_lo;
  bool failed;
  Key warp_key[kWarps];
  double warp_sum[kWarps];
};

__device__ __forceinline__ float load(const float* p) {
  return *p;
}
__device__ __forceinline__ float load(const bf16* p) {
  return __bfloat162float(*p);
}

// One row of logits, maybe split in parts (all_gather's [parts, n, cols]).
template <typename T>
struct RowRef {
  const T* first;  // the row's part 0
  int64_t part_stride;
  int cols, vocab;

  // f(id, value) for each column, a thread's columns in ascending order.
  template <typename F>
  __device__ __forceinline__ void for_each(F&& f) const {
    const T* p = first;
    for (int j0 = 0; j0 < vocab; j0 += cols, p += part_stride) {
      const int c = min(cols, vocab - j0);
      for (int i = threadIdx.x; i < c; i += kThreads) f(static_cast<uint32_t>(j0 + i), load(p + i));
    }
  }
};

__device__ __forceinline__ Key kmin(Key a, Key b) {
  return a < b ? a : b;
}
__device__ __forceinline__ Key shfl_xor_key(Key k, int o) {
  return static_cast<Key>(__shfl_xor_sync(0xffffffffu, static_cast<ull>(k), o));
}

// The smallest key of the block (every thread gets it).
__device__ Key block_min(Key k, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) k = kmin(k, shfl_xor_key(k, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh.warp_key[warp] = k;
  __syncthreads();
  k = sh.warp_key[lane];
  for (int o = 16; o > 0; o >>= 1) k = kmin(k, shfl_xor_key(k, o));
  __syncthreads();  // warp_key may be reused right after
  return k;
}

// A fixed-order sum over the block (every thread gets it): the same bits every run.
__device__ double block_sum(double v, Shared& sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh.warp_sum[warp] = v;
  __syncthreads();
  v = sh.warp_sum[lane];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  return v;
}

struct Weigher {
  float max_logit, temperature;
  int shift;  // H of sampling::to_fixed
};

// Adds every candidate (key <= limit) whose key agrees with `prefix` above
// bit shift + 8 to h, by its digit (key >> shift) & 255: its count and, when
// weighted, its fixed-point weight. A thread adds a run of equal digits at
// once, so a flat row does not serialise on the atomics of one bin.
template <typename T, bool kWeighted>
__device__ void build_hist(const RowRef<T>& row, Hist& h, int shift, const Key& prefix, Key limit,
                           const Weigher& wt) {
  for (int b = threadIdx.x; b < 256; b += kThreads) {
    h.count[b] = 0;
    h.hi[b] = 0;
    h.lo[b] = 0;
  }
  __syncthreads();
  const int above = shift + 8;
  const Key want = above < 64 ? prefix >> above : 0;
  int run = -1;
  uint32_t n = 0;
  ull hi = 0, lo = 0;
  Key last = 0;
  auto flush = [&] {
    if (n == 0) return;
    atomicAdd(&h.count[run], n);
    if (kWeighted) {
      if (hi) atomicAdd(&h.hi[run], hi);
      if (lo) atomicAdd(&h.lo[run], lo);
    }
    if (n == 1) h.key[run] = last;  // read only when the whole bin holds one key
  };
  row.for_each([&](uint32_t id, float x) {
    const Key k = sampling::make_key(x, id);
    if (k > limit || (above < 64 && (k >> above) != want)) return;
    const int d = static_cast<int>((k >> shift) & 255u);
    if (d != run) {
      flush();
      run = d;
      n = 0;
      hi = lo = 0;
    }
    ++n;
    last = k;
    if (kWeighted) {
      const float w = sampling::weight(sampling::rank_logit(x), wt.max_logit, wt.temperature);
      const sampling::Fixed f = sampling::to_fixed(w, wt.shift);
      hi += f.hi;
      lo += f.lo;
    }
  });
  flush();
  __syncthreads();
}

// A bin's amount (or a sum of bins') from its two parts: counts in `hi` for
// a counting walk; weights as hi * 2^32 + lo. Partial sums of either part
// never overflow, so a scan can sum the parts separately.
template <bool kWeighted>
__device__ __forceinline__ void parts(const Hist& h, int b, ull& hi, ull& lo) {
  hi = kWeighted ? h.hi[b] : h.count[b];
  lo = kWeighted ? h.lo[b] : 0;
}
template <bool kWeighted>
__device__ __forceinline__ U128 value(ull hi, ull lo) {
  return kWeighted ? (static_cast<U128>(hi) << 32) + lo : static_cast<U128>(hi);
}

// Warp 0: the bin of h (digit at `shift`) where the walk's total crosses x,
// sh.walk updated to it. Lane l holds bins 8l .. 8l + 7.
template <bool kWeighted>
__device__ void scan_hist(const Hist& h, int shift, Walk& w) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  ull mine_hi = 0, mine_lo = 0;
#pragma unroll 1
  for (int i = 0; i < 8; ++i) {
    ull bh, bl;
    parts<kWeighted>(h, 8 * lane + i, bh, bl);
    mine_hi += bh;
    mine_lo += bl;
  }
  ull incl_hi = mine_hi, incl_lo = mine_lo;
  for (int o = 1; o < 32; o <<= 1) {
    const ull uh = __shfl_up_sync(0xffffffffu, incl_hi, o);
    const ull ul = __shfl_up_sync(0xffffffffu, incl_lo, o);
    if (lane >= o) {
      incl_hi += uh;
      incl_lo += ul;
    }
  }
  const U128 rem = w.x - w.acc;
  const unsigned crossed = __ballot_sync(0xffffffffu, value<kWeighted>(incl_hi, incl_lo) > rem);
  if (crossed == 0) {
    if (lane == 0) w.state = kFailed;
    return;
  }
  if (lane != __ffs(crossed) - 1) return;
  ull run_hi = incl_hi - mine_hi, run_lo = incl_lo - mine_lo;
#pragma unroll 1
  for (int i = 0; i < 8; ++i) {
    const int b = 8 * lane + i;
    ull bh, bl;
    parts<kWeighted>(h, b, bh, bl);
    if (value<kWeighted>(run_hi + bh, run_lo + bl) > rem) {
      w.acc += value<kWeighted>(run_hi, run_lo);
      w.prefix |= static_cast<Key>(b) << shift;
      if (h.count[b] == 1) {
        w.key = h.key[b];
        w.amount = value<kWeighted>(bh, bl);
        w.state = kFound;
      }
      return;
    }
    run_hi += bh;
    run_lo += bl;
  }
}

// Where, in key order over the candidates (key <= limit), the running total
// (of counts, or of weights) first exceeds x: the result is in sh.walk (state
// kFound; kFailed is unreachable, as x is below the total and keys are
// unique). level1, when given, is the weighted histogram of the first digit
// over the same candidates.
template <typename T, bool kWeighted>
__device__ void walk(const RowRef<T>& row, U128 x, Key limit, const Weigher& wt, const Hist* level1,
                     Shared& sh) {
  __syncthreads();  // the last walk's result has been read
  if (threadIdx.x == 0) sh.walk = {x, 0, 0, 0, 0, kRunning};
  __syncthreads();
#pragma unroll 1
  for (int level = 7; level >= 0; --level) {
    const int shift = 8 * level;
    const Hist* h = level1;
    if (level < 7 || !h) {
      build_hist<T, kWeighted>(row, sh.work, shift, sh.walk.prefix, limit, wt);
      h = &sh.work;
    }
    scan_hist<kWeighted>(*h, shift, sh.walk);
    __syncthreads();
    if (sh.walk.state != kRunning) return;
  }
  if (threadIdx.x == 0) sh.walk.state = kFailed;
  __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sample_rows_kernel(SampleArgs a) {
  wait_for_prior_grids();
  __shared__ Shared sh;
  // The row's settings live in shared memory, read where used: registers are
  // what the passes over the row need.
  if (threadIdx.x == 0) {
    sh.q = a.rows[blockIdx.x];
    sh.failed = false;
    sh.total_hi = sh.total_lo = 0;
  }
  __syncthreads();
  const RowRef<T> row{static_cast<const T*>(a.logits) + sh.q.row * a.cols, a.n * a.cols,
                      static_cast<int>(a.cols), static_cast<int>(a.vocab)};

  // The best candidate: the greedy token, and the maximum the weights are relative to.
  Key best = kNoLimit;
  row.for_each([&](uint32_t id, float x) { best = kmin(best, sampling::make_key(x, id)); });
  best = block_min(best, sh);
  const float max_logit = sampling::key_logit(best);
  if (!isfinite(max_logit)) {  // NaN, -inf or +inf everywhere: sample_token throws
    if (threadIdx.x == 0) {
      a.out[2 * blockIdx.x] = -1.0f;
      a.out[2 * blockIdx.x + 1] = 0.0f;
    }
    return;
  }

  Key chosen = best;  // top-k 1 is greedy by definition of the order
  if (sh.q.temperature > 0.0f && sh.q.top_k != 1) {
    const Weigher wt{max_logit, sh.q.temperature, sampling::fixed_shift(a.vocab)};
    Key limit = kNoLimit;
    if (sh.q.top_k > 1 && sh.q.top_k < a.vocab) {
      walk<T, false>(row, static_cast<U128>(sh.q.top_k - 1), kNoLimit, wt, nullptr, sh);
      if (threadIdx.x == 0 && sh.walk.state != kFound) sh.failed = true;
      limit = sh.walk.key;  // the k-th best: candidates are the keys up to it
    }
    build_hist<T, true>(row, sh.level1, 56, 0, limit, wt);
    if (threadIdx.x < 256) {  // the total, by two integer atomics: order-free
      atomicAdd(&sh.total_hi, sh.level1.hi[threadIdx.x]);
      atomicAdd(&sh.total_lo, sh.level1.lo[threadIdx.x]);
    }
    __syncthreads();
    if (threadIdx.x == 0) sh.mass = value<true>(sh.total_hi, sh.total_lo);
    __syncthreads();

    // Nucleus: the shortest prefix whose weight reaches top_p of the total.
    if (sh.q.top_p < 1.0f) {
      const U128 threshold = sampling::top_p_threshold(sh.q.top_p, sh.mass);
      if (threshold != 0) walk<T, true>(row, threshold - 1, limit, wt, &sh.level1, sh);
      if (threadIdx.x == 0) {
        if (threshold == 0)  // the best alone
          sh.mass = sampling::fixed_value(sampling::to_fixed(1.0f, wt.shift));
        else if (sh.walk.state == kFound)
          sh.mass = sh.walk.acc + sh.walk.amount;
        else
          sh.failed = true;
      }
      __syncthreads();
    }
    // Inverse CDF over the kept candidates: the draw lies below their total.
    const uint32_t bits = philox4x32(sh.q.seed, 0, static_cast<uint64_t>(sh.q.position))[0];
    walk<T, true>(row, sampling::draw_target(bits, sh.mass), limit, wt, &sh.level1, sh);
    if (threadIdx.x == 0 && sh.walk.state != kFound) sh.failed = true;
    chosen = sh.walk.key;
  }

  // log-softmax of the raw logits, as the host sampler: exp in float, sum in double.
  float logprob = 0.0f;
  if (sh.q.logprobs) {
    double s = 0.0;
    row.for_each([&](uint32_t, float x) {
      if (x == x) s += static_cast<double>(expf(x - max_logit));
    });
    s = block_sum(s, sh);
    logprob =
        static_cast<float>(static_cast<double>(sampling::key_logit(chosen)) - max_logit - log(s));
  }
  if (threadIdx.x == 0) {
    a.out[2 * blockIdx.x] = sh.failed ? -2.0f : static_cast<float>(sampling::key_id(chosen));
    a.out[2 * blockIdx.x + 1] = logprob;
  }
}

// The target's log-softmax and the k most likely tokens' (Backend::logprob_rows),
// as row_logprobs computes them: the maximum by key, the normaliser exp in
// float summed in double in a fixed order; the i-th most likely is the smallest
// key after the (i-1)-th's, one pass over the row each (k <= 20, and only rows
// that asked come here).
template <typename T>
__global__ void __launch_bounds__(kThreads) logprob_rows_kernel(LogprobArgs a) {
  wait_for_prior_grids();
  __shared__ Shared sh;
  __shared__ float target_logit;
  const int32_t r = a.rows[blockIdx.x], target = a.rows[a.m + blockIdx.x];
  if (threadIdx.x == 0) target_logit = -INFINITY;
  __syncthreads();
  const RowRef<T> row{static_cast<const T*>(a.logits) + r * a.cols, a.n * a.cols,
                      static_cast<int>(a.cols), static_cast<int>(a.vocab)};
  Key best = kNoLimit;
  row.for_each([&](uint32_t id, float x) {
    best = kmin(best, sampling::make_key(x, id));
    if (static_cast<int32_t>(id) == target) target_logit = sampling::rank_logit(x);
  });
  best = block_min(best, sh);
  const float max_logit = sampling::key_logit(best);
  float* out = a.out + static_cast<int64_t>(blockIdx.x) * 2 * (1 + a.k);
  if (!isfinite(max_logit)) {
    for (int i = threadIdx.x; i < 2 * (1 + a.k); i += kThreads) out[i] = i % 2 ? 0.0f : -1.0f;
    return;
  }
  double s = 0.0;
  row.for_each([&](uint32_t, float x) {
    if (x == x) s += static_cast<double>(expf(x - max_logit));
  });
  const double log_sum = log(block_sum(s, sh));
  auto logprob = [&](float x) {
    return static_cast<float>(static_cast<double>(x) - max_logit - log_sum);
  };
  if (threadIdx.x == 0) {
    out[0] = target >= 0 ? static_cast<float>(target) : -1.0f;
    out[1] = target >= 0 ? logprob(target_logit) : 0.0f;
  }
  Key previous = best;
  for (int i = 0; i < a.k; ++i) {
    Key next = best;
    if (i > 0) {
      next = kNoLimit;
      row.for_each([&](uint32_t id, float x) {
        const Key key = sampling::make_key(x, id);
        if (key > previous) next = kmin(next, key);
      });
      next = block_min(next, sh);
    }
    if (threadIdx.x == 0) {
      const bool have = next != kNoLimit;
      out[2 + 2 * i] = have ? static_cast<float>(sampling::key_id(next)) : -1.0f;
      out[3 + 2 * i] = have ? logprob(sampling::key_logit(next)) : 0.0f;
    }
    previous = next;
  }
}

}  // namespace

void launch_logprob_rows(const LogprobArgs& a, cudaStream_t stream) {
  if (a.m == 0) return;
  if (a.bf16_logits)
    launch_kernel(logprob_rows_kernel<bf16>, static_cast<unsigned>(a.m), kThreads, 0, stream, a);
  else
    launch_kernel(logprob_rows_kernel<float>, static_cast<unsigned>(a.m), kThreads, 0, stream, a);
}

void launch_sample_rows(const SampleArgs& a, cudaStream_t stream) {
  if (a.m == 0) return;
  if (a.bf16_logits)
    launch_kernel(sample_rows_kernel<bf16>, static_cast<unsigned>(a.m), kThreads, 0, stream, a);
  else
    launch_kernel(sample_rows_kernel<float>, static_cast<unsigned>(a.m), kThreads, 0, stream, a);
}

}  // namespace tpinfer::cuda
