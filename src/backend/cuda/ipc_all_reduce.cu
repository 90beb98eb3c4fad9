#include <algorithm>
#include <string>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_utils.cuh"
#include "backend/cuda/ipc_all_reduce.hpp"
#include "backend/cuda/kernels.hpp"
#include "base/error.hpp"
#include "dist/mpi_check.hpp"

namespace tpinfer::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kFlagBytes = sizeof(uint32_t) * kIpcMaxBlocks * kIpcMaxRanks;
constexpr size_t kControlBytes = 256;  // two counters, padded so the buffers stay 256-aligned

__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// The work is cut into units of kUnit elements (16 bytes, or one element when
// the count is not a multiple of that: the same choice on every rank, since it
// depends on the count alone). Block b handles units b * kThreads + t +
// k * gridDim.x * kThreads on every rank alike, so it needs only the peers'
// block b to have arrived. `aligned` (this rank's data 16-byte aligned) only
// picks how this rank reads and writes its own data.
template <typename T, int kUnit>
__global__ void __launch_bounds__(kThreads)
    ipc_all_reduce_kernel(IpcPeers peers, uint32_t* control, int rank, int ranks, T* data,
                          int64_t units, size_t half_bytes, bool aligned) {
  static_assert(kUnit == 1 || kUnit * sizeof(T) == 16, "a unit is one element or 16 bytes");
  const uint32_t call = *reinterpret_cast<volatile uint32_t*>(control);
  const size_t offset = (call & 1) * half_bytes;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;

  T* mine = reinterpret_cast<T*>(peers.data[rank] + offset);
  for (int64_t u = first; u < units; u += stride) {
    if constexpr (kUnit == 1) {
      mine[u] = data[u];
    } else if (aligned) {
      reinterpret_cast<uint4*>(mine)[u] = reinterpret_cast<const uint4*>(data)[u];
    } else {
      for (int j = 0; j < kUnit; ++j) mine[u * kUnit + j] = data[u * kUnit + j];
    }
  }
  __threadfence_system();  // this rank's values reach every peer before its flag does
  __syncthreads();
  const uint32_t flag = call + 1;
  if (threadIdx.x < ranks) {
    const int peer = threadIdx.x;
    store_release(peers.flags[peer] + blockIdx.x * kIpcMaxRanks + rank, flag);
    const uint32_t* arrived = peers.flags[rank] + blockIdx.x * kIpcMaxRanks + peer;
    while (load_acquire(arrived) < flag) {
    }
  }
  __syncthreads();

  for (int64_t u = first; u < units; u += stride) {
    float sum[kUnit];
#pragma unroll
    for (int j = 0; j < kUnit; ++j) sum[j] = 0.0f;
    for (int r = 0; r < ranks; ++r) {
      const T* theirs = reinterpret_cast<const T*>(peers.data[r] + offset);
      if constexpr (kUnit == 1) {
        sum[0] += to_float(__ldcv(theirs + u));
      } else {
        alignas(16) T e[kUnit];
        *reinterpret_cast<uint4*>(e) = __ldcv(reinterpret_cast<const uint4*>(theirs) + u);
#pragma unroll
        for (int j = 0; j < kUnit; ++j) sum[j] += to_float(e[j]);
      }
    }
    if constexpr (kUnit == 1) {
      data[u] = from_float<T>(sum[0]);
    } else {
      alignas(16) T e[kUnit];
#pragma unroll
      for (int j = 0; j < kUnit; ++j) e[j] = from_float<T>(sum[j]);
      if (aligned)
        reinterpret_cast<uint4*>(data)[u] = *reinterpret_cast<const uint4*>(e);
      else
        for (int j = 0; j < kUnit; ++j) data[u * kUnit + j] = e[j];
    }
  }

  // The last block out advances the call counter for the next call on this stream.
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(control + 1, 1u) == gridDim.x - 1) {
      control[1] = 0;
      control[0] = flag;
      __threadfence();
    }
  }
}

template <typename T>
void launch(const IpcPeers& peers, uint32_t* control, int rank, int ranks, void* data,
            int64_t count, size_t half_bytes, cudaStream_t stream) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const bool vector = count % kVec == 0;
  const int64_t units = vector ? count / kVec : count;
  const int blocks =
      static_cast<int>(std::clamp<int64_t>((units + kThreads - 1) / kThreads, 1, kIpcMaxBlocks));
  const bool aligned = reinterpret_cast<uintptr_t>(data) % 16 == 0;
  if (vector)
    ipc_all_reduce_kernel<T, kVec><<<blocks, kThreads, 0, stream>>>(
        peers, control, rank, ranks, static_cast<T*>(data), units, half_bytes, aligned);
  else
    ipc_all_reduce_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(
        peers, control, rank, ranks, static_cast<T*>(data), units, half_bytes, aligned);
  TPINFER_CUDA_CHECK_LAUNCH();
}

}  // namespace

IpcAllReduce::IpcAllReduce(MPI_Comm comm, size_t capacity_bytes) {
  TPINFER_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  TPINFER_MPI_CHECK(MPI_Comm_size(comm, &size_));
  if (size_ > kIpcMaxRanks)
    throw UsageError("custom all-reduce: " + std::to_string(size_) + " ranks, at most " +
                     std::to_string(kIpcMaxRanks));
  capacity_ = (std::max<size_t>(capacity_bytes, 256) + 255) / 256 * 256;
  void* p = nullptr;
  TPINFER_CUDA_CHECK(cudaMalloc(&p, kFlagBytes + kControlBytes + 2 * capacity_));
  own_ = DeviceMemory(p);
  TPINFER_CUDA_CHECK(cudaMemset(p, 0, kFlagBytes + kControlBytes));
  TPINFER_CUDA_CHECK(cudaDeviceSynchronize());  // zeroed before any peer can signal here
  control_ = reinterpret_cast<uint32_t*>(static_cast<char*>(p) + kFlagBytes);

  cudaIpcMemHandle_t handle{};
  TPINFER_CUDA_CHECK(cudaIpcGetMemHandle(&handle, p));
  std::vector<cudaIpcMemHandle_t> all(static_cast<size_t>(size_));
  TPINFER_MPI_CHECK(
      MPI_Allgather(&handle, sizeof handle, MPI_BYTE, all.data(), sizeof handle, MPI_BYTE, comm));
  for (int r = 0; r < size_; ++r) {
    void* base = p;
    if (r != rank_) {
      TPINFER_CUDA_CHECK(
          cudaIpcOpenMemHandle(&base, all[static_cast<size_t>(r)], cudaIpcMemLazyEnablePeerAccess));
      mapped_.push_back(base);
    }
    peers_.flags[r] = static_cast<uint32_t*>(base);
    peers_.data[r] = static_cast<char*>(base) + kFlagBytes + kControlBytes;
  }
  // Every rank has mapped every other before any of them runs a call.
  TPINFER_MPI_CHECK(MPI_Barrier(comm));
}

IpcAllReduce::~IpcAllReduce() {
  for (void* m : mapped_) (void)cudaIpcCloseMemHandle(m);
}

void IpcAllReduce::all_reduce_sum(void* data, int64_t count, DType dtype, cudaStream_t stream) {
  if (count <= 0) return;
  if (static_cast<size_t>(count) * dtype_bytes(dtype) > capacity_)
    throw Error("custom all-reduce: " + std::to_string(count) + " elements exceed its " +
                    std::to_string(capacity_) + " bytes",
                kExitOther);
  switch (dtype) {
    case DType::f32:
      return launch<float>(peers_, control_, rank_, size_, data, count, capacity_, stream);
    case DType::bf16:
      return launch<bf16>(peers_, control_, rank_, size_, data, count, capacity_, stream);
    case DType::f16:
      return launch<__half>(peers_, control_, rank_, size_, data, count, capacity_, stream);
    case DType::fp8_e4m3:
      break;
  }
  throw InternalError("custom all-reduce: fp8 values are never reduced");
}

}  // namespace tpinfer::cuda
