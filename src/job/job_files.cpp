#include "job/job_files.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "job/journal.hpp"
#include "job/output_lock.hpp"

namespace tpinfer {

namespace {

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  std::error_code ea, eb;
  const auto ca = std::filesystem::weakly_canonical(a, ea);
  const auto cb = std::filesystem::weakly_canonical(b, eb);
  return !ea && !eb && ca == cb;
}

}  // namespace

void check_job_files(const JobFiles& f) {
  struct stat st {};
  if (::stat(f.input.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw UsageError("--input " + f.input + " is a folder; it must be a file of requests");
  std::vector<std::pair<std::string, std::string>> files = {
      {"--input", f.input},
      {"--model", f.model},
      {"--output", f.output},
      {"the manifest of --output", manifest_path(f.output)},
      {"the lock of --output", OutputLock::lock_path(f.output)}};
  if (!f.metrics.empty()) files.push_back({"--metrics", f.metrics});
  for (size_t i = 0; i < files.size(); ++i)
    for (size_t j = i + 1; j < files.size(); ++j)
      if (same_file(files[i].second, files[j].second))
        throw UsageError(files[i].first + " " + files[i].second + " and " + files[j].first + " " +
                         files[j].second +
                         " are the same file; a run must read and write distinct files");
}

}  // namespace tpinfer
