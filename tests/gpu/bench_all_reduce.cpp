// All-reduce latency and bandwidth of NCCL against tpinfer's own CUDA IPC
// kernel (ipc_all_reduce.cu), bf16, 4 KB to 64 MB, under `mpirun -np N` with one
// GPU a rank (issue 11). Not a test: `tpinfer_allreduce_bench` prints a line per
// size with each path's median time a call and bus bandwidth, and the largest
// difference between the two results (the sum orders differ: NCCL's tree or
// ring against rank order in fp32). With fewer GPUs than ranks NCCL refuses,
// so only the IPC kernel runs (ranks sharing a GPU: a correctness run, its
// times are not the real thing).
//
// Timing: CUDA events around 50 back-to-back calls on one stream, after an MPI
// barrier and 5 warm-up calls; median of 7 such runs, divided by 50.
#include <cuda_bf16.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "backend/cuda/collectives.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/ipc_all_reduce.hpp"

namespace tpinfer {
namespace {

constexpr int kCalls = 50, kRuns = 7, kWarmup = 5;

cuda::Event timing_event() {
  cudaEvent_t e = nullptr;
  TPINFER_CUDA_CHECK(cudaEventCreate(&e));
  return cuda::Event(e);
}

template <typename Fn>
double median_us(Fn call, cudaStream_t stream) {
  cuda::Event start = timing_event(), stop = timing_event();
  std::vector<double> runs;
  for (int run = 0; run < kRuns; ++run) {
    for (int i = 0; i < kWarmup; ++i) call();
    TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
    MPI_Barrier(MPI_COMM_WORLD);
    TPINFER_CUDA_CHECK(cudaEventRecord(start.get(), stream));
    for (int i = 0; i < kCalls; ++i) call();
    TPINFER_CUDA_CHECK(cudaEventRecord(stop.get(), stream));
    TPINFER_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float ms = 0;
    TPINFER_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    runs.push_back(1e3 * ms / kCalls);
  }
  std::sort(runs.begin(), runs.end());
  double mid = runs[runs.size() / 2];
  // The slowest rank's median is the collective's time.
  MPI_Allreduce(MPI_IN_PLACE, &mid, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return mid;
}

std::vector<float> download(const void* dev, size_t n) {
  std::vector<__nv_bfloat16> h(n);
  TPINFER_CUDA_CHECK(cudaMemcpy(h.data(), dev, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __bfloat162float(h[i]);
  return f;
}

int run() {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int gpus = cuda_device_count();
  if (gpus == 0) {
    if (rank == 0) std::printf("no CUDA device\n");
    return 0;
  }
  const bool own_gpu = gpus >= ranks;
  TPINFER_CUDA_CHECK(cudaSetDevice(own_gpu ? rank : 0));
  cuda::Stream stream = cuda::make_stream();
  const size_t max_bytes = size_t{64} << 20;
  std::unique_ptr<cuda::Collectives> nccl;
  if (own_gpu)
    nccl = std::make_unique<cuda::Collectives>(
        MPI_COMM_WORLD, CudaBackendOptions::Collectives::nccl, 0, stream.get());
  cuda::IpcAllReduce ipc(MPI_COMM_WORLD, max_bytes);

  void* input = nullptr;
  void* work = nullptr;
  TPINFER_CUDA_CHECK(cudaMalloc(&input, max_bytes));
  TPINFER_CUDA_CHECK(cudaMalloc(&work, max_bytes));
  cuda::DeviceMemory own_input(input), own_work(work);
  {
    std::vector<__nv_bfloat16> h(max_bytes / 2);
    std::mt19937 gen(static_cast<unsigned>(rank + 1));
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& v : h) v = __float2bfloat16(d(gen));
    TPINFER_CUDA_CHECK(cudaMemcpy(input, h.data(), max_bytes, cudaMemcpyHostToDevice));
  }
  if (rank == 0) {
    std::printf("all-reduce sum, bf16, %d ranks, %s\n", ranks,
                own_gpu ? "one GPU a rank" : "ranks sharing a GPU: NCCL refuses, IPC only");
    std::printf("%10s %12s %12s %12s %12s %14s\n", "bytes", "nccl us", "nccl busGB/s", "ipc us",
                "ipc busGB/s", "max |diff|");
  }
  const double bus = 2.0 * (ranks - 1) / ranks;
  for (size_t bytes = 4096; bytes <= max_bytes; bytes *= 2) {
    const int64_t count = static_cast<int64_t>(bytes / 2);
    // Timed in place on a scratch copy: repeated sums grow it, which costs nothing.
    double nccl_us = 0, diff = 0;
    if (nccl) {
      TPINFER_CUDA_CHECK(cudaMemcpy(work, input, bytes, cudaMemcpyDeviceToDevice));
      nccl->all_reduce_sum(work, count, DType::bf16);
      TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
      const auto want = download(work, static_cast<size_t>(count));
      TPINFER_CUDA_CHECK(cudaMemcpy(work, input, bytes, cudaMemcpyDeviceToDevice));
      ipc.all_reduce_sum(work, count, DType::bf16, stream.get());
      TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
      const auto got = download(work, static_cast<size_t>(count));
      for (size_t i = 0; i < got.size(); ++i)
        diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
      MPI_Allreduce(MPI_IN_PLACE, &diff, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      TPINFER_CUDA_CHECK(cudaMemcpy(work, input, bytes, cudaMemcpyDeviceToDevice));
      nccl_us = median_us([&] { nccl->all_reduce_sum(work, count, DType::bf16); }, stream.get());
    }
    TPINFER_CUDA_CHECK(cudaMemcpy(work, input, bytes, cudaMemcpyDeviceToDevice));
    const double ipc_us = median_us(
        [&] { ipc.all_reduce_sum(work, count, DType::bf16, stream.get()); }, stream.get());
    if (rank == 0) {
      auto gbs = [&](double us) { return us > 0 ? bytes * bus / (us * 1e3) : 0.0; };
      std::printf("%10zu %12.2f %12.1f %12.2f %12.1f %14.4g\n", bytes, nccl_us, gbs(nccl_us),
                  ipc_us, gbs(ipc_us), diff);
      std::fflush(stdout);
    }
  }
  TPINFER_CUDA_CHECK(cudaDeviceSynchronize());
  MPI_Barrier(MPI_COMM_WORLD);  // no rank unmaps a buffer a peer still reads
  return 0;
}

}  // namespace
}  // namespace tpinfer

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 1;
  try {
    rc = tpinfer::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tpinfer_allreduce_bench: %s\n", e.what());
  }
  MPI_Finalize();
  return rc;
}
