#include "tpinfer/error.hpp"

#include <mpi.h>

#include <cstring>
#include <string>

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

[[noreturn]] void throw_hdf5_error(const char* call, const char* file, int line) {
  throw ModelError(std::string(file) + ":" + std::to_string(line) + ": HDF5 call " + call +
                   " failed");
}

[[noreturn]] void throw_system_error(int err, const std::string& what, const char* file, int line) {
  throw Error(what + ": " + std::strerror(err) + " (" + file + ":" + std::to_string(line) + ")",
              kExitOther);
}

}  // namespace tpinfer
