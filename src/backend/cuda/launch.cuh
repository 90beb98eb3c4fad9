#pragma once
// Kernel launches with programmatic dependent launch (PDL, sm_90 and later).
// A decode step at batch 1 is ~290 short kernels back to back; normally each
// one is launched only after the one before has drained and its memory has
// been flushed. Launched through launch_kernel, a kernel is launched as its
// predecessor completes, before that flush, and waits in wait_for_prior_grids()
// until every earlier kernel of the stream has finished and its writes are
// visible. No kernel triggers its dependents early (griddepcontrol.
// launch_dependents): measured on an H100 (docs/PERF.md), a trigger at kernel
// entry made batch-1 decode 10 % slower (the next kernel's waiting blocks take
// the SMs the tail of the current one needs), one after the GEMV's main loop
// gained nothing over the implicit trigger at completion, which gains ~1 %.
//
// The rule for every kernel launched this way: wait_for_prior_grids() before
// it reads anything an earlier kernel writes and before it writes anything an
// earlier kernel reads, on every path through the kernel. It is a no-op when
// the launch did not ask for PDL.
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"

namespace tpinfer::cuda {

// Whether launch_kernel asks for PDL (set_programmatic_launch, kernels.hpp).
bool programmatic_launch();

__device__ __forceinline__ void wait_for_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches and checks the launch (no TPINFER_CUDA_CHECK_LAUNCH needed after it).
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute pdl{};
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &pdl;
  config.numAttrs = programmatic_launch() ? 1 : 0;
  TPINFER_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...));
}

}  // namespace tpinfer::cuda
