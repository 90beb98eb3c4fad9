#pragma once
// CUDA graphs of decode steps. A decode step of n sequences launches the same
// kernels with the same arguments every time, except for what the kernels read
// from device memory (tokens, positions, block tables, attention items), which
// set_batch and the attention plan upload before the graph runs. So one graph a
// step shape, recorded the first time that shape is seen, replays every later
// step of it: one launch instead of ~10 per layer, which at batch 1 removes the
// launch gaps between kernels that are each a few microseconds long.
//
// A graph holds the raw pointers it was recorded with; `Signature` names the
// scratch buffers that can move (they grow from the arena), and a graph whose
// signature no longer matches is dropped and recorded again.
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "backend/cuda/resources.hpp"

namespace tpinfer::cuda {

using Graph = Owned<cudaGraph_t, cudaGraphDestroy>;
using GraphExec = Owned<cudaGraphExec_t, cudaGraphExecDestroy>;

struct StepShape {
  int64_t n_tokens = 0, n_seqs = 0, table_stride = 0, logit_rows = 0;
  int splits = 0;
  // Batch-invariant mode's attention launches (AttentionPlan): split items,
  // the grid's chunks, and whether the rest fold their chunks.
  int n_split = 0, split_chunks = 0, split_row_stride = 0, others_chunked = 0;
  auto tie() const {
    return std::tie(n_tokens, n_seqs, table_stride, logit_rows, splits, n_split, split_chunks,
                    split_row_stride, others_chunked);
  }
  bool operator<(const StepShape& o) const { return tie() < o.tie(); }
};

struct Signature {
  const void *meta_dev = nullptr, *work_dev = nullptr, *work_host = nullptr, *partial_dev = nullptr,
             *gather_dev = nullptr, *counts_dev = nullptr;
  bool operator==(const Signature&) const = default;
};

struct RecordedStep {
  GraphExec exec;
  Signature signature;
  int64_t cache_blocks = 0;  // the KV cache it reads and writes (bounds of later batches)
};

class StepGraphs {
 public:
  // The recording for `shape` when it was made with `sig`; a stale one is dropped.
  RecordedStep* find(const StepShape& shape, const Signature& sig) {
    auto it = graphs_.find(shape);
    if (it == graphs_.end()) return nullptr;
    if (!(it->second.signature == sig)) {
      graphs_.erase(it);
      return nullptr;
    }
    return &it->second;
  }
  // Ends the capture on `stream`, instantiates it and keeps it under `shape`.
  RecordedStep& finish_capture(cudaStream_t stream, const StepShape& shape, const Signature& sig,
                               int64_t cache_blocks);
  // Ends a capture an error interrupted, discarding what it recorded.
  static void abandon_capture(cudaStream_t stream);
  size_t size() const { return graphs_.size(); }

 private:
  std::map<StepShape, RecordedStep> graphs_;
};

}  // namespace tpinfer::cuda
