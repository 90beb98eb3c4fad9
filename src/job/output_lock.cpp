#include "job/output_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace tpinfer {

namespace {

std::string folder_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

std::string this_host() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) return "?";
  return host;
}

// "pid 4242 on host node7 since 2026-12-06 15:40:41 UTC", from the lock file.
std::string describe_holder(int fd) {
  std::string text(4096, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<size_t>(n) : 0);
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    std::string s = "pid " + std::to_string(j.at("pid").get<long long>()) + " on host " +
                    j.at("host").get<std::string>();
    const std::time_t since = j.at("since").get<long long>();
    char when[64];
    if (std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&since)) > 0)
      s += std::string(" since ") + when;
    return s;
  } catch (const std::exception&) {
    return "a process that has not written its name yet";
  }
}

bool same_file(int fd, const std::string& path) {
  struct stat by_fd {
  }, by_path{};
  if (::fstat(fd, &by_fd) != 0 || ::stat(path.c_str(), &by_path) != 0) return false;
  return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

void check_output_folder(const std::string& output) {
  const std::string dir = folder_of(output);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    throw UsageError("output folder " + dir + " of --output " + output + ": " +
                     std::strerror(errno) + " (create it first)");
  if (!S_ISDIR(st.st_mode))
    throw UsageError("output folder " + dir + " of --output " + output + " is not a folder");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw UsageError("output folder " + dir + " of --output " + output +
                     " is not writable: " + std::strerror(errno));
}

}  // namespace

std::string OutputLock::lock_path(const std::string& output) {
  return output + ".lock";
}

OutputLock::OutputLock(const std::string& output) : path_(lock_path(output)) {
  check_output_folder(output);
  // A holder that ends between our open and our lock removes the file it
  // locked; the lock we then get is on a file nobody else will see, so retry
  // until the locked file is the one at the path.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      throw UsageError("cannot create the lock file " + path_ +
                       " beside --output: " + std::strerror(errno));
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    if (::fcntl(fd, F_OFD_SETLK, &whole) != 0) {
      const int err = errno;
      if (err == EAGAIN || err == EACCES) {
        const std::string holder = describe_holder(fd);
        ::close(fd);
        throw UsageError("output " + output + " is in use by another tpinfer job (" + holder +
                         "; lock " + path_ +
                         "): refusing to write it too; wait for that job to end, or choose "
                         "another --output");
      }
      ::close(fd);
      throw UsageError("cannot lock " + path_ + ": " + std::strerror(err) +
                       " (the filesystem of --output gives no file locks, so tpinfer cannot "
                       "make sure no other job writes the same output; put the output on a "
                       "filesystem with fcntl locks: a local disk, NFS with lockd, Lustre "
                       "mounted with -o flock)");
    }
    if (!same_file(fd, path_)) {
      ::close(fd);
      continue;
    }
    const nlohmann::json me = {{"pid", static_cast<long long>(::getpid())},
                               {"host", this_host()},
                               {"since", static_cast<long long>(std::time(nullptr))},
                               {"output", output}};
    const std::string text = me.dump() + "\n";
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      const int err = errno;
      ::unlink(path_.c_str());
      ::close(fd);
      throw UsageError("cannot write the lock file " + path_ + ": " + std::strerror(err));
    }
    fd_ = fd;
    return;
  }
  throw UsageError("cannot take the lock " + path_ +
                   ": it was removed and re-created 100 times while trying (another job "
                   "keeps starting and stopping on the same --output)");
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  // Unlinked before the lock goes: a waiter that opened the old file finds
  // it gone from the path and retries on a new one.
  ::unlink(path_.c_str());
  ::close(fd_);
}

}  // namespace tpinfer
