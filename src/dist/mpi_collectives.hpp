#pragma once
// HostCollectives over an MPI communicator: each call is one MPI collective
// under a watchdog guard (a hung peer ends the job as restartable).
#include <mpi.h>

#include <memory>

#include "base/collectives.hpp"

namespace tpinfer {

// Over the backend's own duplicate of `comm`, so its collectives cannot match
// messages of the caller's; the caller keeps `comm`. Collective over `comm`.
std::unique_ptr<HostCollectives> mpi_collectives(MPI_Comm comm);

}  // namespace tpinfer
