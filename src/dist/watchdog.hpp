#pragma once
// The collective watchdog: a thread per rank that ends the whole job with exit
// 75 (restartable) when a blocking operation of this rank does not finish
// within --collective-timeout, or when a registered NCCL communicator reports
// an asynchronous error, instead of letting the job hang until its time limit.
//
// The main thread arms a Guard around each operation that waits for other
// ranks (a collective, an engine step with its TP collectives, a wait for
// rank 0). Guards nest: the outermost one's start counts, the innermost names
// where the rank is stuck. On a timeout the watchdog prints one line naming
// the rank and the operation, runs the abort hooks (ncclCommAbort, so that
// kernels spinning on a dead peer return), and calls MPI_Abort(MPI_COMM_WORLD,
// 75), which ends every rank; mpirun then exits 75. The same happens when the
// job still runs --drain-timeout seconds after a drain signal.
//
// MPI is initialised MPI_THREAD_FUNNELED (only the main thread calls MPI), and
// the watchdog calls MPI_Abort from its own thread while the main thread may
// be blocked inside MPI. The standard does not sanction that below
// MPI_THREAD_MULTIPLE, but requesting MULTIPLE for every call of the job to
// make one last-resort call legal costs more than it buys: in Open MPI,
// MPI_Abort goes through the runtime (PMIx, with its own progress thread) and
// does not touch the communicator the main thread is blocked in; tested with
// 4.1 (mpirun exits with the given code). In case an MPI does block there, a
// second thread _exit(75)s this rank 10 s later; the launcher then ends the
// others (and their own watchdogs would).
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace tpinfer::watchdog {

// Runs the watchdog thread of this rank while it lives (one at a time).
class Watchdog {
 public:
  // timeout_s > 0; rank: this rank in MPI_COMM_WORLD, for the message.
  // drain_timeout_s > 0: once a drain signal arrives (SIGTERM, SIGUSR1,
  // SIGINT), the job is aborted the same way if it still runs that much later.
  Watchdog(double timeout_s, int rank, double drain_timeout_s = 0);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::thread thread_;
};

// The timeout in force, or 0 while no watchdog runs. Liveness checks outside
// a blocking call (rank 0 waiting for a group's messages) derive theirs from it.
double timeout_s();

// Arms the watchdog around one blocking operation of the main thread. `op` is a
// static name ("all_reduce_sum", "engine_step", ...), also the name that
// TPINFER_FAULT's op= matches. Without a running watchdog it only checks for
// an injected hang.
class Guard {
 public:
  explicit Guard(const char* op);
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  bool armed_;
};

// The engine step this rank is at, for the message (0: not stepping yet).
void set_step(int64_t step);

// A communicator's hooks for as long as the handle lives: `check` is polled by
// the watchdog thread and returns a non-empty message on an asynchronous error
// (ncclCommGetAsyncError); `abort` runs before MPI_Abort (ncclCommAbort). Both
// run on the watchdog thread and must be safe there while the main thread uses
// the communicator.
class Hook {
 public:
  Hook() = default;
  Hook(std::function<std::string()> check, std::function<void()> abort);
  ~Hook();
  Hook(Hook&& o) noexcept;
  Hook& operator=(Hook&& o) noexcept;
  Hook(const Hook&) = delete;
  Hook& operator=(const Hook&) = delete;

 private:
  void release();
  int64_t id_ = 0;
};

}  // namespace tpinfer::watchdog
