#pragma once
// One check macro per library (CUDA runtime, cuBLAS/cuBLASLt, NCCL), in the
// style of base/error.hpp: each throws with file:line and the failing call.
// CUDA and cuBLAS failures are tpinfer::Error (a device fault or a bad argument
// is a bug or a broken GPU, not something a restart cures); NCCL failures are
// RestartableError (a peer died or the fabric broke), except NCCL's own
// "invalid argument / usage", which are bugs. The status arrives as an int so
// this header needs none of the libraries' headers (the kernels include it).
namespace tpinfer::cuda {

[[noreturn]] void throw_cuda_error(int status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);
[[noreturn]] void throw_nccl_error(int status, const char* call, const char* file, int line);

}  // namespace tpinfer::cuda

#define TPINFER_CUDA_CHECK(call)                                                 \
  do {                                                                           \
    const int tpinfer_st_ = static_cast<int>(call);                              \
    if (tpinfer_st_ != 0)                                                        \
      ::tpinfer::cuda::throw_cuda_error(tpinfer_st_, #call, __FILE__, __LINE__); \
  } while (0)

#define TPINFER_CUBLAS_CHECK(call)                                                 \
  do {                                                                             \
    const int tpinfer_st_ = static_cast<int>(call);                                \
    if (tpinfer_st_ != 0)                                                          \
      ::tpinfer::cuda::throw_cublas_error(tpinfer_st_, #call, __FILE__, __LINE__); \
  } while (0)

#define TPINFER_NCCL_CHECK(call)                                                 \
  do {                                                                           \
    const int tpinfer_st_ = static_cast<int>(call);                              \
    if (tpinfer_st_ != 0)                                                        \
      ::tpinfer::cuda::throw_nccl_error(tpinfer_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad launch configuration shows here; a fault inside
// the kernel shows at the next synchronising call (download).
#define TPINFER_CUDA_CHECK_LAUNCH() TPINFER_CUDA_CHECK(cudaGetLastError())
