#include "dist/mpi_check.hpp"

#include <mpi.h>

#include <string>

#include "base/error.hpp"

namespace tpinfer {

[[noreturn]] void throw_mpi_error(int rc, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  // A failed MPI call almost always means a peer died or the fabric broke: a
  // restart may succeed, so this is restartable.
  throw RestartableError(std::string(file) + ":" + std::to_string(line) + ": " + call +
                         " failed: " + std::string(text, len));
}

}  // namespace tpinfer
