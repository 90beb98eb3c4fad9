#include "backend/cuda/step_graphs.hpp"

#include "backend/cuda/cuda_check.hpp"

namespace tpinfer::cuda {

RecordedStep& StepGraphs::finish_capture(cudaStream_t stream, const StepShape& shape,
                                         const Signature& sig, int64_t cache_blocks) {
  cudaGraph_t raw = nullptr;
  TPINFER_CUDA_CHECK(cudaStreamEndCapture(stream, &raw));
  Graph graph(raw);
  cudaGraphExec_t exec = nullptr;
  TPINFER_CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
  RecordedStep& r = graphs_[shape];
  r.exec = GraphExec(exec);
  r.signature = sig;
  r.cache_blocks = cache_blocks;
  return r;
}

void StepGraphs::abandon_capture(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) return;
  if (status == cudaStreamCaptureStatusNone) return;
  cudaGraph_t raw = nullptr;
  (void)cudaStreamEndCapture(stream, &raw);
  if (raw) (void)cudaGraphDestroy(raw);
  (void)cudaGetLastError();  // an invalidated capture leaves a sticky-free error behind
}

}  // namespace tpinfer::cuda
