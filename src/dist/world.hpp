#pragma once
// The MPI world split into DP x TP: TP groups are consecutive ranks (so a TP
// group stays on one node when ranks are placed by node), DP group g holds
// ranks [g*tp, (g+1)*tp).
#include <mpi.h>

#include <functional>
#include <string>

namespace tpinfer {

// MPI_Init_thread / MPI_Finalize, once per process.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// An owned communicator (MPI_Comm_free on destruction).
class Comm {
 public:
  Comm() = default;
  explicit Comm(MPI_Comm c) : c_(c) {}
  ~Comm();
  Comm(Comm&& o) noexcept : c_(o.c_) { o.c_ = MPI_COMM_NULL; }
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  MPI_Comm get() const { return c_; }
  int rank() const;
  int size() const;

 private:
  MPI_Comm c_ = MPI_COMM_NULL;
};

// An owned duplicate of c (MPI_Comm_dup): its messages cannot match c's.
Comm duplicate(MPI_Comm c);

// A small process-group API over one communicator.
struct ProcessGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank() const;
  int size() const;
  void barrier() const;
  // Sends root's `bytes` to every rank (resizing the others').
  void broadcast(std::string& bytes, int root) const;
  void all_reduce_sum(float* data, int64_t n) const;
};

struct World {
  int rank = 0, size = 1;
  int tp = 1, dp = 1;
  int tp_rank = 0, dp_rank = 0;
  int local_rank = 0, local_size = 1;  // on this node
  Comm world;  // a duplicate of MPI_COMM_WORLD with errors returned, not fatal
  Comm tp_comm;
  Comm node_comm;
  ProcessGroup tp_group() const { return {tp_comm.get()}; }
  bool is_group_leader() const { return tp_rank == 0; }
};

// Throws UsageError when the world size is not a multiple of tp.
World make_world(int tp);

// Runs `stage` on every rank of `comm` and agrees on the outcome: if it threw
// on any rank, every rank throws the lowest failing rank's error (same message
// and exit code, marked `agreed` so only rank 0 prints it).
void agree_on(MPI_Comm comm, const std::function<void()>& stage);

}  // namespace tpinfer
