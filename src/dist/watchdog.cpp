#include "dist/watchdog.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "dist/fault_injection.hpp"
#include "dist/signals.hpp"

namespace tpinfer::watchdog {

namespace {

using Clock = std::chrono::steady_clock;

// How often the thread looks: the timeout is met within this much.
constexpr auto kPoll = std::chrono::milliseconds(100);
// How long MPI_Abort gets before this rank exits on its own.
constexpr auto kAbortGrace = std::chrono::seconds(10);

struct Frame {
  const char* op;
  Clock::time_point start;
};

struct HookFns {
  std::function<std::string()> check;
  std::function<void()> abort;
};

// Shared by the main thread (guards, hooks) and the watchdog thread.
struct State {
  std::mutex mu;
  std::condition_variable wake;
  bool running = false, stop = false;
  double timeout_s = 0;
  double drain_timeout_s = 0;        // 0: no deadline after a drain signal
  double drain_timeout_given_s = 0;  // as the user gave it, for the message
  int rank = 0;
  std::vector<Frame> frames;  // the main thread's armed guards, outermost first
  std::map<int64_t, HookFns> hooks;
  int64_t next_hook = 1;
  std::atomic<int64_t> step{0};
};

State& state() {
  static State s;
  return s;
}

// Ends the job; called with s.mu held, never returns.
[[noreturn]] void abort_job(State& s, const std::string& why) {
  std::fprintf(stderr, "tpinfer: error (rank %d): %s; aborting (exit %d)\n", s.rank, why.c_str(),
               kExitRestartable);
  std::fflush(stderr);
  for (auto& [id, h] : s.hooks) {
    try {
      if (h.abort) h.abort();
    } catch (...) {  // aborting anyway: the next hook and MPI_Abort still run
    }
  }
  std::thread([] {
    std::this_thread::sleep_for(kAbortGrace);
    _exit(kExitRestartable);
  }).detach();
  MPI_Abort(MPI_COMM_WORLD, kExitRestartable);
  _exit(kExitRestartable);
}

// "all_reduce_sum did not finish within --collective-timeout 5 s (step 7, inside
// engine_step): a peer hung or died, or this rank is stuck"
std::string timeout_message(const State& s) {
  const Frame& outer = s.frames.front();
  const Frame& inner = s.frames.back();
  char limit[80];
  std::snprintf(limit, sizeof limit, " did not finish within --collective-timeout %g s",
                s.timeout_s);
  std::string where;
  if (const int64_t step = s.step.load(); step > 0) where = "step " + std::to_string(step);
  if (&outer != &inner) where += std::string(where.empty() ? "" : ", ") + "inside " + outer.op;
  if (!where.empty()) where = " (" + where + ")";
  return std::string(inner.op) + limit + where + ": a peer hung or died, or this rank is stuck";
}

// "the job did not stop within --drain-timeout 3 s of signal 15 (step 40, inside
// all_reduce_sum)": the drain waits on a rank that does not answer.
std::string drain_message(const State& s, int sig) {
  char text[128];
  std::snprintf(text, sizeof text, "the job did not stop within --drain-timeout %g s of signal %d",
                s.drain_timeout_given_s, sig);
  std::string where;
  if (const int64_t step = s.step.load(); step > 0) where = "step " + std::to_string(step);
  if (!s.frames.empty())
    where += std::string(where.empty() ? "" : ", ") + "inside " + s.frames.back().op;
  if (!where.empty()) where = " (" + where + ")";
  return text + where + ": a peer hangs, or a step takes longer than the deadline";
}

void run(State& s) {
  std::unique_lock lock(s.mu);
  std::optional<Clock::time_point> signalled;
  while (!s.stop) {
    s.wake.wait_for(lock, kPoll);
    if (s.stop) break;
    // A drain must end the job by its deadline even when a peer hangs inside a
    // collective (the step would only give up at --collective-timeout, past
    // Slurm's KillWait): what is written stays, the rest runs on --resume.
    if (const int sig = drain_signal(); sig != 0 && s.drain_timeout_s > 0) {
      if (!signalled) signalled = Clock::now();
      if (std::chrono::duration<double>(Clock::now() - *signalled).count() > s.drain_timeout_s)
        abort_job(s, drain_message(s, sig));
    }
    if (!s.frames.empty()) {
      const double waited =
          std::chrono::duration<double>(Clock::now() - s.frames.front().start).count();
      if (waited > s.timeout_s) abort_job(s, timeout_message(s));
    }
    for (auto& [id, h] : s.hooks) {
      if (!h.check) continue;
      std::string error;
      try {
        error = h.check();
      } catch (const std::exception& e) {
        error = e.what();
      }
      if (!error.empty()) abort_job(s, error);
    }
  }
}

}  // namespace

Watchdog::Watchdog(double timeout_s, int rank, double drain_timeout_s) {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (s.running) throw InternalError("watchdog: a second watchdog was started");
  s.running = true;
  s.stop = false;
  s.timeout_s = timeout_s;
  // Rank 0 gives up a little earlier than the others: it syncs the output and
  // marks the manifest in its abort hooks, which the launcher's kill of every
  // rank after another rank's MPI_Abort would cut short.
  s.drain_timeout_s =
      rank == 0 ? drain_timeout_s - std::min(1.0, 0.1 * drain_timeout_s) : drain_timeout_s;
  s.drain_timeout_given_s = drain_timeout_s;
  s.rank = rank;
  s.frames.clear();
  s.frames.reserve(16);  // pushes under the lock never allocate in practice
  thread_ = std::thread([&s] { run(s); });
}

Watchdog::~Watchdog() {
  State& s = state();
  {
    std::lock_guard lock(s.mu);
    s.stop = true;
  }
  s.wake.notify_all();
  thread_.join();
  std::lock_guard lock(s.mu);
  s.running = false;
  s.timeout_s = 0;
  s.drain_timeout_s = 0;
  s.frames.clear();
  s.step = 0;
}

double timeout_s() {
  State& s = state();
  std::lock_guard lock(s.mu);
  return s.timeout_s;
}

Guard::Guard(const char* op) : armed_(false) {
  State& s = state();
  {
    std::lock_guard lock(s.mu);
    if (s.running) {
      s.frames.push_back({op, Clock::now()});
      armed_ = true;
    }
  }
  fault::in_operation(op);  // test-only: a hang injected inside this operation
}

Guard::~Guard() {
  if (!armed_) return;
  State& s = state();
  std::lock_guard lock(s.mu);
  if (!s.frames.empty()) s.frames.pop_back();
}

void set_step(int64_t step) {
  state().step = step;
}

Hook::Hook(std::function<std::string()> check, std::function<void()> abort) {
  State& s = state();
  std::lock_guard lock(s.mu);
  id_ = s.next_hook++;
  s.hooks.emplace(id_, HookFns{std::move(check), std::move(abort)});
}

Hook::~Hook() {
  release();
}

Hook::Hook(Hook&& o) noexcept : id_(std::exchange(o.id_, 0)) {}

Hook& Hook::operator=(Hook&& o) noexcept {
  if (this != &o) {
    release();
    id_ = std::exchange(o.id_, 0);
  }
  return *this;
}

void Hook::release() {
  if (id_ == 0) return;
  State& s = state();
  std::lock_guard lock(s.mu);
  s.hooks.erase(std::exchange(id_, 0));
}

}  // namespace tpinfer::watchdog
