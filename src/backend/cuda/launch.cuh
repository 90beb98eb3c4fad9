#pragma once
// Kernel launches with programmatic dependent launch (PDL, sm_90 and later).
// A decode step at batch 1 is ~290 short kernels back to back; normally each
// one starts only after the one before has drained and its memory is flushed,
// so every boundary costs a ramp-down, a launch and a ramp-up. Launched through
// launch_kernel, a kernel may be scheduled while its predecessor still runs:
// it does the work that needs nothing from earlier kernels (the GEMV issues its
// first weight loads), then waits in wait_for_prior_grids() until every earlier
// kernel of the stream has finished and its writes are visible.
//
// The rule for every kernel launched this way: wait_for_prior_grids() before
// it reads anything an earlier kernel writes and before it writes anything an
// earlier kernel reads, on every path through the kernel (a kernel whose blocks
// all return early without waiting would let the next one overtake it). Both
// device calls are no-ops when the launch did not ask for PDL.
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

// Lets the next kernel of the stream be scheduled once every block of this
// one has called it (it still waits for this one in wait_for_prior_grids).
__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// Both, first thing: for every kernel with no work before its wait.
__device__ __forceinline__ void start_after_prior_grids() {
  allow_next_grid();
  wait_for_prior_grids();
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
