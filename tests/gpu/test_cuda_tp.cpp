// Tensor parallelism on the cuda backend, under mpirun -np N for N = 2, 4 or 8
// (ctest gpu_tp2 and gpu_tp4 run 2 and 4 ranks): the forward pass at TP=N gives
// the logits of TP=1 on the cuda backend, and the collectives sum and gather
// exactly. On one GPU the ranks share it through the host-staged MPI
// collectives (NCCL refuses two ranks on one GPU); with N or more GPUs the NCCL
// path is checked too, one GPU a rank. tpinfer's own CUDA IPC all-reduce runs
// between the ranks either way. A config whose heads or MLP do not split N
// ways skips.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../mpi_world.hpp"
#include "backend/cuda/ipc_all_reduce.hpp"
#include "gpu_test_util.hpp"
#include "model/model.hpp"
#include "model_compare.hpp"

namespace tpinfer::gputest {
namespace {

using test::world_rank;
using test::world_size;
bool tp_world() {
  const int n = world_size();
  return n == 2 || n == 4 || n == 8;
}

using Kind = CudaBackendOptions::Collectives;

struct TpCase {
  const char* config;
  Kind kind;
  size_t custom_bytes = 0;  // all-reduces up to this size through the IPC kernel
};

class CudaTensorParallel : public ::testing::TestWithParam<TpCase> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (!tp_world()) GTEST_SKIP() << "needs mpirun -np 2, 4 or 8";
    if (GetParam().kind == Kind::nccl && cuda_device_count() < world_size())
      GTEST_SKIP() << "NCCL needs one GPU per rank";
  }
  CudaBackendOptions options() const {
    CudaBackendOptions o;
    o.collectives = GetParam().kind;
    o.custom_all_reduce_bytes = GetParam().custom_bytes;
    o.device = GetParam().kind == Kind::nccl ? world_rank() : 0;
    o.memory_fraction = 0.1;  // the ranks (and two backends each) may share the GPU
    return o;
  }
};

TEST_P(CudaTensorParallel, CollectivesSumAndGatherExactly) {
  auto be = make_cuda_backend(MPI_COMM_WORLD, options());
  const int r = world_rank(), n = world_size();
  // Small integers: every partial sum is exact in bf16.
  auto value = [](size_t i, int rank) { return static_cast<float>((i * 7 + rank * 3) % 64) - 32; };
  std::vector<float> xh(4096 * 3);
  for (size_t i = 0; i < xh.size(); ++i) xh[i] = value(i, r);
  Tensor x = put(*be, {3, 4096}, xh, DType::bf16);
  be->all_reduce_sum(x);
  const auto sum = get(*be, x);
  for (size_t i = 0; i < xh.size(); ++i) {
    float want = 0;
    for (int k = 0; k < n; ++k) want += value(i, k);
    ASSERT_EQ(sum[i], want) << "element " << i;
  }
  Tensor local = put(*be, {2, 5}, std::vector<float>(10, static_cast<float>(r + 1)), DType::bf16);
  Tensor all = poisoned(*be, {n, 2, 5}, DType::bf16);
  be->all_gather(local, all);
  const auto g = get(*be, all);
  for (int i = 0; i < 10 * n; ++i) EXPECT_EQ(g[i], static_cast<float>(i / 10 + 1)) << i;
  // f32 tensors go through the same paths.
  Tensor xf = put(*be, {7}, std::vector<float>(7, 0.25f * static_cast<float>(r + 1)), DType::f32);
  be->all_reduce_sum(xf);
  for (float v : get(*be, xf)) EXPECT_EQ(v, 0.125f * static_cast<float>(n * (n + 1)));
}

TEST_P(CudaTensorParallel, LogitsMatchTp1) {
  const ModelConfig c = test_config(GetParam().config);
  const int n = world_size();
  if (c.num_heads % n != 0 || c.intermediate_size % n != 0)
    GTEST_SKIP() << GetParam().config << " does not split " << n << " ways";
  const int block_size = 16;
  const auto steps = mixed_steps(block_size, 40, c.vocab_size);
  CudaBackendOptions single_opts = options();
  auto single = make_cuda_backend(MPI_COMM_SELF, single_opts);
  auto sharded = make_cuda_backend(MPI_COMM_WORLD, options());
  Model m1 = load_test_model(*single, c, MPI_COMM_SELF, 40, block_size);
  Model m2 = load_test_model(*sharded, c, MPI_COMM_WORLD, 40, block_size);
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<float> want, got;
    forward(m1, *single, steps[i], want);
    forward(m2, *sharded, steps[i], got);
    // bf16 reduction order differs between TP=1 and TP=2: the same bound as
    // against the cpu backend.
    expect_logits_close(got, want, c.vocab_size, 2e-2,
                        std::string(GetParam().config) + " tp" + std::to_string(n) + " step " +
                            std::to_string(i) + " rank " + std::to_string(world_rank()));
    // Every rank holds rank 0's logits (the all_gather gave them every slice).
    std::vector<float> first = got;
    MPI_Bcast(first.data(), static_cast<int>(first.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    EXPECT_EQ(got, first) << "rank " << world_rank() << " disagrees with rank 0 at step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaTensorParallel,
                         ::testing::Values(TpCase{"llama3_gqa_d64", Kind::mpi},
                                           TpCase{"qwen2_bias_tied_d16", Kind::mpi},
                                           TpCase{"mistral_mha_d128", Kind::mpi},
                                           TpCase{"llama3_gqa_d64", Kind::nccl},
                                           TpCase{"llama3_gqa_d64", Kind::mpi, size_t{1} << 20},
                                           TpCase{"mistral_mha_d128", Kind::nccl, size_t{1} << 20}),
                         [](const auto& info) {
                           return std::string(info.param.config) +
                                  (info.param.kind == Kind::nccl ? "_nccl" : "_mpi") +
                                  (info.param.custom_bytes > 0 ? "_ipc" : "");
                         });

// The IPC all-reduce on its own: random values, sizes from one element to its
// capacity (element-wise and 16-byte units), aligned and unaligned data, the
// three dtypes, directly and replayed from a CUDA graph. Each
// rank must hold exactly the fp32 sum in rank order, rounded once.
class IpcAllReduceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (!tp_world()) GTEST_SKIP() << "needs mpirun -np 2, 4 or 8";
    TPINFER_CUDA_CHECK(cudaSetDevice(cuda_device_count() >= world_size() ? world_rank() : 0));
  }
};

template <typename T>
float as_float(T v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return __half2float(v);
}
template <typename T>
T from_float(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16(v);
  else
    return __float2half(v);
}

// Fills data with this rank's values for `round`, returns what the sum must be.
template <typename T>
std::vector<float> fill_round(T* dev, int64_t n, int round) {
  const int ranks = world_size();
  std::vector<std::vector<T>> values(ranks, std::vector<T>(static_cast<size_t>(n)));
  for (int r = 0; r < ranks; ++r) {
    std::mt19937 gen(static_cast<unsigned>(1000 * round + 17 * r + n));
    std::normal_distribution<float> d(0.0f, 3.0f);
    for (auto& v : values[static_cast<size_t>(r)]) v = from_float<T>(d(gen));
  }
  TPINFER_CUDA_CHECK(cudaMemcpy(dev, values[static_cast<size_t>(world_rank())].data(),
                                static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
  std::vector<float> want(static_cast<size_t>(n));
  for (size_t i = 0; i < want.size(); ++i) {
    float acc = 0;  // fp32, rank order, rounded once
    for (int r = 0; r < ranks; ++r) acc += as_float(values[static_cast<size_t>(r)][i]);
    want[i] = as_float(from_float<T>(acc));
  }
  return want;
}

template <typename T>
void expect_sum(const T* dev, const std::vector<float>& want, const std::string& what) {
  std::vector<T> got(want.size());
  TPINFER_CUDA_CHECK(cudaMemcpy(got.data(), dev, got.size() * sizeof(T), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(as_float(got[i]), want[i]) << what << " element " << i << " rank " << world_rank();
}

template <typename T>
void check_type(DType dtype) {
  const size_t capacity = 256 * 1024;
  cuda::IpcAllReduce ar(MPI_COMM_WORLD, capacity);
  const int64_t max_n = static_cast<int64_t>(capacity / sizeof(T));
  void* raw = nullptr;
  TPINFER_CUDA_CHECK(cudaMalloc(&raw, capacity));
  const cuda::DeviceMemory owned(raw);
  T* dev = static_cast<T*>(raw);
  const cuda::Stream owned_stream = cuda::make_stream();
  cudaStream_t stream = owned_stream.get();
  int round = 0;
  for (int64_t n :
       {int64_t{1}, int64_t{7}, int64_t{255}, int64_t{4096}, int64_t{4096 * 8 + 3}, max_n}) {
    for (int rep = 0; rep < 3; ++rep) {  // the two buffers alternate
      const auto want = fill_round(dev, n, ++round);
      ar.all_reduce_sum(dev, n, dtype, stream);
      TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
      expect_sum(dev, want, "n " + std::to_string(n));
    }
  }
  // 16-byte units over data that is not 16-byte aligned (read and written element-wise).
  for (int rep = 0; rep < 2; ++rep) {
    const auto want = fill_round(dev + 1, 4096, ++round);
    ar.all_reduce_sum(dev + 1, 4096, dtype, stream);
    TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
    expect_sum(dev + 1, want, "unaligned");
  }
  // Recorded once, replayed with new values: the call counter is on the device.
  const int64_t n = 4096;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  TPINFER_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  ar.all_reduce_sum(dev, n, dtype, stream);
  TPINFER_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  TPINFER_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int rep = 0; rep < 4; ++rep) {
    const auto want = fill_round(dev, n, ++round);
    TPINFER_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
    expect_sum(dev, want, "graph replay " + std::to_string(rep));
  }
  TPINFER_CUDA_CHECK(cudaGraphExecDestroy(exec));
  TPINFER_CUDA_CHECK(cudaGraphDestroy(graph));
  TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream));
  MPI_Barrier(MPI_COMM_WORLD);  // no rank unmaps while another still reads
}

TEST_F(IpcAllReduceTest, SumsExactlyInRankOrderDirectlyAndFromAGraph) {
  check_type<float>(DType::f32);
  check_type<__nv_bfloat16>(DType::bf16);
  check_type<__half>(DType::f16);
}

}  // namespace
}  // namespace tpinfer::gputest
