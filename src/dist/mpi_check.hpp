#pragma once
// The MPI check: a failed MPI call throws with file:line and the failing call.
namespace tpinfer {
[[noreturn]] void throw_mpi_error(int rc, const char* call, const char* file, int line);
}  // namespace tpinfer

#define TPINFER_MPI_CHECK(call)                                                               \
  do {                                                                                        \
    int tpinfer_rc_ = (call);                                                                 \
    if (tpinfer_rc_ != 0) ::tpinfer::throw_mpi_error(tpinfer_rc_, #call, __FILE__, __LINE__); \
  } while (0)
