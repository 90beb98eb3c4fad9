// linear for a handful of rows (decode at small batch): out[n, m] = x[n, k]
// w[m, k]^T (+ bias), n <= kMaxGemvRows. Weight streaming bound: each warp
// owns one output row and streams that row of w with 16-byte loads, kUnroll of
// them in flight per lane (the weights are read once, so the loads bypass L1
// with the streaming hint); x (n x k, a few KB) is re-read from L1/L2. cuBLASLt
// reaches 2.4 - 2.9 TB/s on the 32 MB qkv / o_proj weights of an 8B model at
// n = 1 (docs/CUDA_BACKEND.md); this kernel is what a measurement picks there.
//
// launch_gemv_rows: any n, for --deterministic's small weights (gemm.hpp).
// Each output is summed in one order whatever n: lane l takes 8-element
// pieces l, l + 32, ... of k in order, then the warp's fixed tree sum. Row
// groups of kMaxGemvRows go on the grid's y, each streaming w again (from L2:
// the weights it is meant for are small).
#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/launch.cuh"

namespace tpinfer::cuda {
namespace {

constexpr int kWarps = 8;   // rows a block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ void to_float8(const int4& v, float (&f)[8]) {
  const Bf16x8 b = *reinterpret_cast<const Bf16x8*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(b.h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <class Out>
__device__ __forceinline__ void store(Out* out, size_t i, float v) {
  if constexpr (std::is_same_v<Out, float>)
    out[i] = v;
  else
    out[i] = __float2bfloat16(v);
}

// acc[r] += w . x[r] over one 8-element piece i of k, for rows r < rows (<= N).
template <int N>
__device__ __forceinline__ void fma_piece(const int4& w, const int4* xv, int k8, int i, int rows,
                                          float (&acc)[N]) {
  float wf[8];
  to_float8(w, wf);
#pragma unroll
  for (int r = 0; r < N; ++r) {
    if (r >= rows) break;
    float xf[8];
    to_float8(__ldg(xv + static_cast<size_t>(r) * k8 + i), xf);
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[r] = fmaf(wf[j], xf[j], acc[r]);
  }
}

// The warp's sums (fixed tree order), plus the bias: out[first + r][row] for r < rows.
template <int N, class Out>
__device__ __forceinline__ void store_sums(float (&acc)[N], const bf16* bias, int row, int m,
                                           int first, int rows, int lane, Out* out) {
  const float b = bias != nullptr ? __bfloat162float(bias[row]) : 0.0f;
#pragma unroll
  for (int r = 0; r < N; ++r) {
    const float s = warp_sum(acc[r]);
    if (lane == r && r < rows) store(out, static_cast<size_t>(first + r) * m + row, s + b);
  }
}

template <int N>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                const bf16* __restrict__ bias, bf16* __restrict__ out, int k8, int m) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const bool live = row < m;
  const int4* wr = reinterpret_cast<const int4*>(w) + static_cast<size_t>(live ? row : 0) * k8;
  const int4* xv = reinterpret_cast<const int4*>(x);
  int4 wv[kUnroll];
  auto load_weights = [&](int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * 32;
      wv[u] = live && i < k8 ? __ldcs(wr + i) : make_int4(0, 0, 0, 0);
    }
  };
  // The weights are no earlier kernel's output: under PDL the first loads go
  // out while the kernel before this one (which writes x) is being flushed.
  load_weights(lane);
  wait_for_prior_grids();
  if (!live) return;
  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;
  for (int base = lane; base < k8; base += 32 * kUnroll) {
    if (base != lane) load_weights(base);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * 32;
      if (i >= k8) break;
      fma_piece<N>(wv[u], xv, k8, i, N, acc);
    }
  }
  store_sums<N>(acc, bias, row, m, 0, N, lane, out);
}

template <class Out>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_rows_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                     const bf16* __restrict__ bias, Out* __restrict__ out, int k8, int m, int n) {
  constexpr int N = kMaxGemvRows;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int first = static_cast<int>(blockIdx.y) * N;
  const int rows = min(N, n - first);
  wait_for_prior_grids();
  if (row >= m) return;
  const int4* wr = reinterpret_cast<const int4*>(w) + static_cast<size_t>(row) * k8;
  const int4* xv = reinterpret_cast<const int4*>(x) + static_cast<size_t>(first) * k8;
  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;
  for (int i = lane; i < k8; i += 32) fma_piece<N>(__ldg(wr + i), xv, k8, i, rows, acc);
  store_sums<N>(acc, bias, row, m, first, rows, lane, out);
}

template <int N>
void launch_rows(const bf16* x, const bf16* w, const bf16* bias, bf16* out, int64_t k, int64_t m,
                 cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((m + kWarps - 1) / kWarps);
  launch_kernel(gemv_kernel<N>, blocks, kWarps * 32, 0, stream, x, w, bias, out,
                static_cast<int>(k / 8), static_cast<int>(m));
}

// launch_rows<1> .. launch_rows<sizeof...(I)>, indexed by rows - 1.
template <int... I>
constexpr auto launchers_by_rows(std::integer_sequence<int, I...>) {
  return std::array{&launch_rows<I + 1>...};
}

}  // namespace

bool gemv_applies(int64_t n, int64_t k, int64_t m, const void* x, const void* w, int max_rows) {
  return n >= 1 && n <= max_rows && n <= kMaxGemvRows && k % 8 == 0 && k / 8 < (int64_t{1} << 30) &&
         m < (int64_t{1} << 31) - kWarps && aligned16_host(x) && aligned16_host(w);
}

bool gemv_rows_applies(int64_t n, int64_t k, int64_t m, const void* x, const void* w) {
  return n >= 1 && k % 8 == 0 && k / 8 < (int64_t{1} << 30) && m < (int64_t{1} << 31) - kWarps &&
         aligned16_host(x) && aligned16_host(w);
}

void launch_gemv_rows(const bf16* x, const bf16* w, const bf16* bias, void* out, bool out_f32,
                      int64_t n, int64_t k, int64_t m, cudaStream_t stream) {
  // Launches of at most 65,535 row groups (grid.y's limit): every row is
  // summed the same way in any of them.
  constexpr int64_t kLaunchRows = int64_t{65535} * kMaxGemvRows;
  const auto k8 = static_cast<int>(k / 8);
  for (int64_t r0 = 0; r0 < n; r0 += kLaunchRows) {
    const int64_t rows = std::min(kLaunchRows, n - r0);
    const dim3 grid(static_cast<unsigned>((m + kWarps - 1) / kWarps),
                    static_cast<unsigned>((rows + kMaxGemvRows - 1) / kMaxGemvRows));
    const bf16* xs = x + r0 * k;
    if (out_f32)
      launch_kernel(gemv_rows_kernel<float>, grid, kWarps * 32, 0, stream, xs, w, bias,
                    static_cast<float*>(out) + r0 * m, k8, static_cast<int>(m),
                    static_cast<int>(rows));
    else
      launch_kernel(gemv_rows_kernel<bf16>, grid, kWarps * 32, 0, stream, xs, w, bias,
                    static_cast<bf16*>(out) + r0 * m, k8, static_cast<int>(m),
                    static_cast<int>(rows));
  }
}

void launch_gemv(const bf16* x, const bf16* w, const bf16* bias, bf16* out, int64_t n, int64_t k,
                 int64_t m, cudaStream_t stream) {
  if (n < 1 || n > kMaxGemvRows) return;  // gemv_applies said no
  static constexpr auto by_rows =
      launchers_by_rows(std::make_integer_sequence<int, kMaxGemvRows>{});
  by_rows[n - 1](x, w, bias, out, k, m, stream);
}

}  // namespace tpinfer::cuda
