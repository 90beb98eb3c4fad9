// The whole Llama forward pass (src/model) on the cuda backend against the cpu
// backend: the same seeded random model (bf16 storage) loaded on both, two
// mixed steps (prefills, a chunked prefill, decodes) over shuffled block
// tables. Logits must agree within 2e-2 of the logit scale, and the argmax must
// agree wherever the cpu's top-2 margin exceeds that bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "dist/mpi_collectives.hpp"
#include "gpu_test_util.hpp"
#include "model/model.hpp"
#include "model_compare.hpp"

namespace tpinfer::gputest {
namespace {

class CudaModel : public ::testing::TestWithParam<const char*> {};

// The three mixed steps on both backends; `fp8_cache`: both hold the KV cache
// in float8 e4m3, and logits must agree within `tol` of the logit scale.
void expect_model_matches_cpu(const char* config, bool fp8_cache, double tol) {
  const ModelConfig c = test_config(config);
  const int block_size = 16;
  const auto steps = mixed_steps(block_size, 40, c.vocab_size);
  auto cpu = make_cpu_backend(mpi_collectives(MPI_COMM_SELF), 0);
  CudaBackendOptions o;
  o.memory_fraction = 0.1;
  auto gpu = make_cuda_backend(MPI_COMM_SELF, o);
  Model mc = load_test_model(*cpu, c, MPI_COMM_SELF, 40, block_size);
  Model mg = load_test_model(*gpu, c, MPI_COMM_SELF, 40, block_size);
  if (fp8_cache) {
    allocate_kv_cache(mc, *cpu, 40, block_size, DType::fp8_e4m3);
    allocate_kv_cache(mg, *gpu, 40, block_size, DType::fp8_e4m3);
    ASSERT_EQ(mg.cache.k[0].dtype, DType::fp8_e4m3);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<float> want, got;
    forward(mc, *cpu, steps[i], want);
    forward(mg, *gpu, steps[i], got);
    expect_logits_close(
        got, want, c.vocab_size, tol,
        std::string(config) + (fp8_cache ? " fp8 cache" : "") + " step " + std::to_string(i));
  }
}

TEST_P(CudaModel, LogitsMatchCpu) {
  SKIP_WITHOUT_GPU();
  expect_model_matches_cpu(GetParam(), false, 2e-2);
}

// Each backend rounds its own fp32 k to e4m3, so a cached value can differ by
// one fp8 step where the two backends' values straddle a rounding boundary:
// a bound of 3e-2.
TEST_P(CudaModel, LogitsMatchCpuWithFp8Cache) {
  SKIP_WITHOUT_GPU();
  expect_model_matches_cpu(GetParam(), true, 3e-2);
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaModel,
                         ::testing::Values("llama3_gqa_d64", "qwen2_bias_tied_d16",
                                           "mistral_mha_d128"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace tpinfer::gputest
