#pragma once
// The fp32 reference backend: batch-invariant GEMMs (invariant_gemm.hpp), OpenMP elsewhere, the TP group's
// collectives through `tp` (dist/mpi_collectives.hpp makes them over MPI).
#include <memory>

#include "backend/backend.hpp"
#include "base/collectives.hpp"

namespace tpinfer {

std::unique_ptr<Backend> make_cpu_backend(std::unique_ptr<HostCollectives> tp, int threads);

}  // namespace tpinfer
