// Tensor parallelism on the cuda backend, under mpirun -np 2 (ctest gpu_tp2):
// the forward pass at TP=2 gives the logits of TP=1 on the cuda backend, and
// the collectives sum and gather exactly. Both ranks share GPU 0 through the
// host-staged MPI collectives (NCCL refuses two ranks on one GPU); with two or
// more GPUs the NCCL path is checked too, one GPU a rank. Skips unless the
// world has exactly 2 ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "gpu_test_util.hpp"
#include "model_compare.hpp"
#include "tpinfer/model.hpp"

namespace tpinfer::gputest {
namespace {

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

using Kind = CudaBackendOptions::Collectives;

struct TpCase {
  const char* config;
  Kind kind;
};

class CudaTensorParallel : public ::testing::TestWithParam<TpCase> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    if (world_size() != 2) GTEST_SKIP() << "needs mpirun -np 2";
    if (GetParam().kind == Kind::nccl && cuda_device_count() < 2)
      GTEST_SKIP() << "NCCL needs one GPU per rank";
  }
  CudaBackendOptions options() const {
    CudaBackendOptions o;
    o.collectives = GetParam().kind;
    o.device = GetParam().kind == Kind::nccl ? world_rank() : 0;
    o.memory_fraction = 0.1;  // two ranks (and two backends each) share the GPU
    return o;
  }
};

TEST_P(CudaTensorParallel, CollectivesSumAndGatherExactly) {
  auto be = make_cuda_backend(MPI_COMM_WORLD, options());
  const int r = world_rank();
  // Small integers: every partial sum is exact in bf16.
  std::vector<float> xh(4096 * 3);
  for (size_t i = 0; i < xh.size(); ++i) xh[i] = static_cast<float>((i * 7 + r * 3) % 64) - 32;
  Tensor x = put(*be, {3, 4096}, xh, DType::bf16);
  be->all_reduce_sum(x);
  const auto sum = get(*be, x);
  for (size_t i = 0; i < xh.size(); ++i) {
    const float want =
        static_cast<float>((i * 7) % 64) - 32 + static_cast<float>((i * 7 + 3) % 64) - 32;
    ASSERT_EQ(sum[i], want) << "element " << i;
  }
  Tensor local = put(*be, {2, 5}, std::vector<float>(10, static_cast<float>(r + 1)), DType::bf16);
  Tensor all = poisoned(*be, {2, 2, 5}, DType::bf16);
  be->all_gather(local, all);
  const auto g = get(*be, all);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(g[i], i < 10 ? 1.0f : 2.0f) << i;
  // f32 tensors go through the same paths.
  Tensor xf = put(*be, {7}, std::vector<float>(7, 0.25f * static_cast<float>(r + 1)), DType::f32);
  be->all_reduce_sum(xf);
  for (float v : get(*be, xf)) EXPECT_EQ(v, 0.75f);
}

TEST_P(CudaTensorParallel, LogitsMatchTp1) {
  const ModelConfig c = test_config(GetParam().config);
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
                        std::string(GetParam().config) + " tp2 step " + std::to_string(i) +
                            " rank " + std::to_string(world_rank()));
    // Both ranks hold the same logits (the all_gather gave them every slice).
    std::vector<float> other(got.size());
    MPI_Sendrecv(got.data(), static_cast<int>(got.size()), MPI_FLOAT, 1 - world_rank(), 0,
                 other.data(), static_cast<int>(other.size()), MPI_FLOAT, 1 - world_rank(), 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    EXPECT_EQ(got, other) << "ranks disagree at step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, CudaTensorParallel,
    ::testing::Values(TpCase{"llama3_gqa_d64", Kind::mpi}, TpCase{"qwen2_bias_tied_d16", Kind::mpi},
                      TpCase{"mistral_mha_d128", Kind::mpi}, TpCase{"llama3_gqa_d64", Kind::nccl}),
    [](const auto& info) {
      return std::string(info.param.config) + (info.param.kind == Kind::nccl ? "_nccl" : "_mpi");
    });

}  // namespace
}  // namespace tpinfer::gputest
