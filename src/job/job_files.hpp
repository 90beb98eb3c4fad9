#pragma once
// The files one run touches must be distinct: a metrics file that is the input
// grows the input by a line, one that is the model changes its fingerprint, one
// that is the output mixes metrics among the results.
#include <string>

namespace tpinfer {

struct JobFiles {
  std::string input, model, output, metrics;  // metrics may be empty
};

// Throws UsageError naming both options when two of the files a run reads or
// writes (input, model, output, its manifest and lock, metrics) are one file:
// the same device and inode where both exist (so symlinks and hard links count),
// else the same path once symlinks are resolved. Also refuses an input that is
// a folder.
void check_job_files(const JobFiles& files);

}  // namespace tpinfer
