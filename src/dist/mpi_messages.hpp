#pragma once
// Receiving a message already found by MPI_Probe / MPI_Iprobe, as a string:
// the coordinator's and the health monitor's messages. Main thread only.
#include <mpi.h>

#include <string>

namespace tpinfer {

// The probed message's bytes. Guarded by the watchdog ("receive"): a large
// message moves by rendezvous, which needs the sender's MPI to make progress,
// so a sender that hung right after posting it would otherwise leave this
// rank waiting forever.
std::string receive_string(MPI_Comm comm, const MPI_Status& probed);

}  // namespace tpinfer
