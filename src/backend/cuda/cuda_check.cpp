#include "backend/cuda/cuda_check.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "base/error.hpp"

namespace tpinfer::cuda {
namespace {

std::string where(const char* call, const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line) + ": " + call + " failed: ";
}

}  // namespace

void throw_cuda_error(int status, const char* call, const char* file, int line) {
  const auto e = static_cast<cudaError_t>(status);
  throw Error(where(call, file, line) + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")",
              kExitOther);
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  const auto s = static_cast<cublasStatus_t>(status);
  throw Error(
      where(call, file, line) + cublasLtGetStatusName(s) + " (" + cublasLtGetStatusString(s) + ")",
      kExitOther);
}

void throw_nccl_error(int status, const char* call, const char* file, int line) {
  const auto r = static_cast<ncclResult_t>(status);
  const std::string msg =
      where(call, file, line) + ncclGetErrorString(r) + " (" + ncclGetLastError(nullptr) + ")";
  if (r == ncclInvalidArgument || r == ncclInvalidUsage) throw Error(msg, kExitOther);
  throw RestartableError(msg);
}

}  // namespace tpinfer::cuda
