#include "base/error.hpp"

#include <cstring>
#include <string>

namespace tpinfer {

[[noreturn]] void throw_system_error(int err, const std::string& what, const char* file, int line) {
  throw Error(what + ": " + std::strerror(err) + " (" + file + ":" + std::to_string(line) + ")",
              kExitOther);
}

}  // namespace tpinfer
