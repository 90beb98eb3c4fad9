#pragma once
// Errors and exit codes. Every failure is an exception carrying the exit code
// that main() returns; the message is the one line a user sees.
#include <stdexcept>
#include <string>

namespace tpinfer {

enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,        // usage, input or model error: restarting won't help
  kExitRestartable = 75  // peer died, collective timeout, drained on a signal
};

struct Error : std::runtime_error {
  int exit_code;
  bool agreed = false;  // every rank has this same error (only rank 0 prints it)
  Error(const std::string& what, int code) : std::runtime_error(what), exit_code(code) {}
};
// Bad command line or option values.
struct UsageError : Error {
  explicit UsageError(const std::string& w) : Error(w, kExitUsage) {}
};
// Bad input file (requests, config).
struct InputError : Error {
  explicit InputError(const std::string& w) : Error(w, kExitUsage) {}
};
// Bad or unsupported model file / config / TP layout.
struct ModelError : Error {
  explicit ModelError(const std::string& w) : Error(w, kExitUsage) {}
};
// A failure a restart may cure (peer died, communication failed, drained).
struct RestartableError : Error {
  explicit RestartableError(const std::string& w) : Error(w, kExitRestartable) {}
};
// A broken invariant: a bug in tpinfer, not in its input (TPINFER_ASSERT).
struct InternalError : Error {
  explicit InternalError(const std::string& w) : Error(w, kExitOther) {}
};

[[noreturn]] void throw_system_error(int err, const std::string& what, const char* file, int line);

}  // namespace tpinfer

// An invariant of tpinfer's own code; `what` (a string expression, evaluated
// only on failure) says which.
#define TPINFER_ASSERT(cond, what)                     \
  do {                                                 \
    if (!(cond)) throw ::tpinfer::InternalError(what); \
  } while (0)
