#pragma once
// RAII owners of the CUDA, cuBLASLt and NCCL resources the backend holds. Each
// is move-only; destructors never throw (a failure while tearing down is
// ignored: there is nothing left to do with it, and the process may be exiting
// because of an earlier error).
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <utility>

#include "backend/cuda/cuda_check.hpp"

namespace tpinfer::cuda {

// A move-only owner of a handle T released with Destroy.
template <class T, auto Destroy>
class Owned {
 public:
  Owned() = default;
  explicit Owned(T h) : h_(h) {}
  ~Owned() { reset(); }
  Owned(Owned&& o) noexcept : h_(std::exchange(o.h_, T{})) {}
  Owned& operator=(Owned&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, T{});
    }
    return *this;
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  T get() const { return h_; }
  explicit operator bool() const { return h_ != T{}; }
  void reset() {
    if (h_ != T{}) (void)Destroy(std::exchange(h_, T{}));
  }

 private:
  T h_{};
};

using Stream = Owned<cudaStream_t, cudaStreamDestroy>;
using Event = Owned<cudaEvent_t, cudaEventDestroy>;
using LtHandle = Owned<cublasLtHandle_t, cublasLtDestroy>;
using MatmulDesc = Owned<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using MatrixLayout = Owned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using MatmulPreference = Owned<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;
using NcclComm = Owned<ncclComm_t, ncclCommDestroy>;
using DeviceMemory = Owned<void*, cudaFree>;
using PinnedMemory = Owned<void*, cudaFreeHost>;

inline Stream make_stream() {
  cudaStream_t s = nullptr;
  TPINFER_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

inline Event make_event() {
  cudaEvent_t e = nullptr;
  TPINFER_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return Event(e);
}

// An event that records a time (for measuring kernels; slower to record).
inline Event make_timing_event() {
  cudaEvent_t e = nullptr;
  TPINFER_CUDA_CHECK(cudaEventCreate(&e));
  return Event(e);
}

// Page-locked host memory that grows on demand (its contents do not survive a
// growth). Used for staging uploads, downloads, batch metadata and the
// host-staged collectives.
class PinnedBuffer {
 public:
  void* data() const { return mem_.get(); }
  size_t size() const { return size_; }
  // Growth waits for the device first: an async copy may still read the old buffer.
  void reserve(size_t bytes) {
    if (bytes <= size_) return;
    TPINFER_CUDA_CHECK(cudaDeviceSynchronize());
    mem_.reset();
    size_ = 0;
    void* p = nullptr;
    TPINFER_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
    mem_ = PinnedMemory(p);
    size_ = bytes;
  }

 private:
  PinnedMemory mem_;
  size_t size_ = 0;
};

}  // namespace tpinfer::cuda
