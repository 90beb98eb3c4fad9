#include "dist/fault_injection.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "base/error.hpp"

namespace tpinfer::fault {

namespace {

enum class Kind { none, crash, hang, write_fail };

// The names the watchdog's guards use (a typo must not make a test that
// never injects anything).
const std::set<std::string>& guarded_ops() {
  static const std::set<std::string> ops = {
      "all_reduce_sum",    "all_gather",      "broadcast",      "barrier",
      "agree_on",          "step_control",    "engine_step",    "wait_for_work",
      "hand_over_results", "send_to_leaders", "job_statistics", "job_end",
      "nccl_setup",        "receive"};
  return ops;
}

struct Fault {
  Kind kind = Kind::none;
  int rank = -1;
  int64_t step = 0;
  std::string op;
  bool mine = false;  // this process is the rank
  bool due = false;   // step reached: a hang in op / a write failure is pending
};

Fault g_fault;  // main thread only

[[noreturn]] void bad(const std::string& value, const std::string& why) {
  throw UsageError("TPINFER_FAULT=\"" + value + "\": " + why +
                   " (test-only; form: rank=R,step=S,kind=crash|hang|write-fail[,op=OP])");
}

int64_t parse_int(const std::string& value, const std::string& key, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < 0)
    bad(value, key + " must be an integer >= 0");
  return v;
}

[[noreturn]] void hang_forever(const char* where) {
  std::fprintf(stderr, "tpinfer: fault injection (TPINFER_FAULT): rank %d hangs %s at step %lld\n",
               g_fault.rank, where, static_cast<long long>(g_fault.step));
  std::fflush(stderr);
  for (;;) pause();  // signals (a drain) wake it; it keeps hanging
}

}  // namespace

void init(int rank) {
  g_fault = Fault{};
  const char* env = std::getenv("TPINFER_FAULT");
  if (env == nullptr || *env == '\0') return;
  const std::string value = env;
  Fault f;
  bool has_rank = false, has_step = false;
  size_t start = 0;
  while (start <= value.size()) {
    size_t end = value.find(',', start);
    if (end == std::string::npos) end = value.size();
    const std::string item = value.substr(start, end - start);
    start = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) bad(value, "'" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), v = item.substr(eq + 1);
    if (key == "rank") {
      f.rank = static_cast<int>(parse_int(value, key, v));
      has_rank = true;
    } else if (key == "step") {
      f.step = parse_int(value, key, v);
      if (f.step < 1) bad(value, "step must be >= 1");
      has_step = true;
    } else if (key == "kind") {
      if (v == "crash")
        f.kind = Kind::crash;
      else if (v == "hang")
        f.kind = Kind::hang;
      else if (v == "write-fail")
        f.kind = Kind::write_fail;
      else
        bad(value, "kind '" + v + "' is not crash, hang or write-fail");
    } else if (key == "op") {
      if (guarded_ops().count(v) == 0) bad(value, "op '" + v + "' names no guarded operation");
      f.op = v;
    } else {
      bad(value, "unknown key '" + key + "'");
    }
  }
  if (!has_rank || !has_step || f.kind == Kind::none)
    bad(value, "rank, step and kind are required");
  if (!f.op.empty() && f.kind != Kind::hang) bad(value, "op= goes with kind=hang only");
  if (f.kind == Kind::write_fail && f.rank != 0)
    bad(value, "kind=write-fail needs rank=0 (only rank 0 writes the output)");
  f.mine = f.rank == rank;
  g_fault = f;
}

void at_step(int64_t step) {
  Fault& f = g_fault;
  if (!f.mine || f.due || step != f.step) return;
  switch (f.kind) {
    case Kind::crash:
      std::fprintf(stderr,
                   "tpinfer: fault injection (TPINFER_FAULT): rank %d crashes at step %lld\n",
                   f.rank, static_cast<long long>(step));
      std::fflush(stderr);
      std::raise(SIGKILL);
      break;
    case Kind::hang:
      if (f.op.empty()) hang_forever("outside any collective");
      f.due = true;
      break;
    case Kind::write_fail:
      f.due = true;
      break;
    case Kind::none:
      break;
  }
}

void in_operation(const char* op) {
  Fault& f = g_fault;
  if (f.due && f.kind == Kind::hang && f.op == op) hang_forever(("inside " + f.op).c_str());
}

bool take_write_failure() {
  Fault& f = g_fault;
  if (!f.due || f.kind != Kind::write_fail) return false;
  f.due = false;
  f.kind = Kind::none;
  std::fprintf(stderr,
               "tpinfer: fault injection (TPINFER_FAULT): rank 0 fails a write of the output "
               "(ENOSPC) after step %lld\n",
               static_cast<long long>(f.step));
  return true;
}

}  // namespace tpinfer::fault
