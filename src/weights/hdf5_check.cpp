#include "weights/hdf5_check.hpp"

#include <string>

#include "base/error.hpp"

namespace tpinfer {

[[noreturn]] void throw_hdf5_error(const char* call, const char* file, int line) {
  throw ModelError(std::string(file) + ":" + std::to_string(line) + ": HDF5 call " + call +
                   " failed");
}

}  // namespace tpinfer
