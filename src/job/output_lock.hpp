#pragma once
// One job per output file. Two jobs appending to one output (a --resume started
// while the first still runs, two fresh starts a second apart) would each write
// results the other also writes; the lock makes the second one stop before it
// writes anything.
//
// The lock is an open-file-description lock (fcntl F_OFD_SETLK, whole file) on
// OUTPUT.lock, taken by rank 0 before the output or its manifest is touched and
// held until the job's last write. Why this call: fcntl locks are the ones
// network filesystems implement across clients (NFSv3 through NLM, NFSv4 in the
// protocol, Lustre with -o flock, GPFS, BeeGFS), where flock() may be local to
// one client; the OFD variant is owned by the open file itself, so no other
// close() of the same file elsewhere in the process can drop it (the trap of
// classic POSIX record locks). The kernel (or the NFS server, once the client's
// lease expires) releases it when the holder dies, so a stale lock of a dead
// process never blocks; the file then only says who held it last.
#include <string>

namespace tpinfer {

class OutputLock {
 public:
  // Takes the lock on lock_path(output), writing this host and pid into it.
  // Throws UsageError (exit 2) naming the holder's host and pid when another
  // process holds it, and naming the folder when it cannot be created.
  explicit OutputLock(const std::string& output);
  // Removes the lock file while still holding it, then releases it.
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  static std::string lock_path(const std::string& output);

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace tpinfer
