#include "dist/world.hpp"

#include "base/error.hpp"
#include "base/lead_process.hpp"
#include "dist/mpi_check.hpp"
#include "dist/watchdog.hpp"

namespace tpinfer {

namespace {
// Rank 0 of the world speaks for the job while MPI is up; before MPI_Init and
// after MPI_Finalize every process speaks for itself.
bool world_rank_zero() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return true;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank == 0;
}
const bool lead_check_installed = (set_lead_process_check(&world_rank_zero), true);
}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  // FUNNELED: only the main thread calls MPI; OpenMP threads never do.
  TPINFER_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

Comm::~Comm() {
  if (c_ != MPI_COMM_NULL) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&c_);
  }
}

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    Comm dead(c_);
    c_ = o.c_;
    o.c_ = MPI_COMM_NULL;
  }
  return *this;
}

Comm duplicate(MPI_Comm c) {
  MPI_Comm dup = MPI_COMM_NULL;
  TPINFER_MPI_CHECK(MPI_Comm_dup(c, &dup));
  return Comm(dup);
}

int Comm::rank() const {
  return ProcessGroup{c_}.rank();
}
int Comm::size() const {
  return ProcessGroup{c_}.size();
}

int ProcessGroup::rank() const {
  int r = 0;
  TPINFER_MPI_CHECK(MPI_Comm_rank(comm, &r));
  return r;
}

int ProcessGroup::size() const {
  int s = 0;
  TPINFER_MPI_CHECK(MPI_Comm_size(comm, &s));
  return s;
}

void ProcessGroup::barrier() const {
  watchdog::Guard guard("barrier");
  TPINFER_MPI_CHECK(MPI_Barrier(comm));
}

void ProcessGroup::broadcast(std::string& bytes, int root) const {
  watchdog::Guard guard("broadcast");
  long long n = static_cast<long long>(bytes.size());
  TPINFER_MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, comm));
  bytes.resize(static_cast<size_t>(n));
  // MPI counts are int: send large payloads in pieces.
  constexpr long long kPiece = 1 << 30;
  for (long long off = 0; off < n; off += kPiece) {
    const int len = static_cast<int>(std::min(kPiece, n - off));
    TPINFER_MPI_CHECK(MPI_Bcast(bytes.data() + off, len, MPI_CHAR, root, comm));
  }
}

void ProcessGroup::all_reduce_sum(float* data, int64_t n) const {
  watchdog::Guard guard("all_reduce_sum");
  TPINFER_MPI_CHECK(
      MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm));
}

World make_world(int tp) {
  World w;
  w.world = duplicate(MPI_COMM_WORLD);
  // A failed call must come back to us as an error code we can report and map
  // to an exit code, not abort the job from inside MPI.
  TPINFER_MPI_CHECK(MPI_Comm_set_errhandler(w.world.get(), MPI_ERRORS_RETURN));
  w.rank = w.world.rank();
  w.size = w.world.size();
  if (tp < 1 || w.size % tp != 0)
    throw UsageError("--tp " + std::to_string(tp) + " does not divide the world size " +
                     std::to_string(w.size) + " (rule: ranks = dp x tp)");
  w.tp = tp;
  w.dp = w.size / tp;
  w.dp_rank = w.rank / tp;
  w.tp_rank = w.rank % tp;
  MPI_Comm c = MPI_COMM_NULL;
  TPINFER_MPI_CHECK(MPI_Comm_split(w.world.get(), w.dp_rank, w.tp_rank, &c));
  w.tp_comm = Comm(c);
  TPINFER_MPI_CHECK(MPI_Comm_set_errhandler(w.tp_comm.get(), MPI_ERRORS_RETURN));
  TPINFER_MPI_CHECK(
      MPI_Comm_split_type(w.world.get(), MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &c));
  w.node_comm = Comm(c);
  w.local_rank = w.node_comm.rank();
  w.local_size = w.node_comm.size();
  return w;
}

void agree_on(MPI_Comm comm, const std::function<void()>& stage) {
  ProcessGroup g{comm};
  const int me = g.rank(), n = g.size();
  std::string message;
  int code = 0;
  try {
    stage();
  } catch (const Error& e) {
    message = e.what();
    code = e.exit_code;
  } catch (const std::exception& e) {
    message = e.what();
    code = kExitOther;
  }
  // Only the wait for the other ranks is guarded, not the stage (a model load
  // may take long): ranks run a stage at about the same speed.
  watchdog::Guard guard("agree_on");
  int mine = code != 0 ? me : n, first = n;
  TPINFER_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == n) return;
  TPINFER_MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, first, comm));
  g.broadcast(message, first);
  Error agreed(message, code);
  agreed.agreed = true;
  throw agreed;
}

}  // namespace tpinfer
