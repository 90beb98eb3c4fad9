#include "dist/mpi_messages.hpp"

#include "base/error.hpp"
#include "dist/mpi_check.hpp"
#include "dist/watchdog.hpp"

namespace tpinfer {

std::string receive_string(MPI_Comm comm, const MPI_Status& probed) {
  watchdog::Guard guard("receive");
  int n = 0;
  TPINFER_MPI_CHECK(MPI_Get_count(&probed, MPI_CHAR, &n));
  std::string s(static_cast<size_t>(n), '\0');
  TPINFER_MPI_CHECK(
      MPI_Recv(s.data(), n, MPI_CHAR, probed.MPI_SOURCE, probed.MPI_TAG, comm, MPI_STATUS_IGNORE));
  return s;
}

}  // namespace tpinfer
