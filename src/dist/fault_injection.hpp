#pragma once
// Test-only fault injection, so that failure tests hit exact moments:
//
//   TPINFER_FAULT="rank=R,step=S,kind=KIND[,op=OP]"
//
// makes rank R (of MPI_COMM_WORLD) fail at the start of its S-th engine step
// (steps count from 1 in every run, a resumed one too):
//   crash       raises SIGKILL on itself (a rank that died: mpirun exits 137);
//   hang        sleeps forever there, outside any watchdog guard, so only its
//               peers can notice (a rank that stopped answering);
//   hang,op=OP  sleeps forever inside the next guarded operation named OP at
//               or after step S (all_reduce_sum, all_gather, broadcast,
//               step_control, engine_step, wait_for_work, receive, ...), as a rank stuck
//               in a collective would;
//   write-fail  (rank 0, the writer) the output's next write stops halfway and
//               fails with ENOSPC, as a full disk does.
// Unset or empty: nothing happens. A malformed value is a usage error (exit 2).
#include <cstdint>

namespace tpinfer::fault {

// Reads TPINFER_FAULT once; `rank` is this process's rank in MPI_COMM_WORLD.
void init(int rank);
// At the start of this rank's engine step `step`.
void at_step(int64_t step);
// Inside a watchdog guard named `op`, once it is armed.
void in_operation(const char* op);
// True once, for the write that an armed write-fail must break.
bool take_write_failure();

}  // namespace tpinfer::fault
