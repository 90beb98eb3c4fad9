#pragma once
// Rank 0's progress report: a live bar on a terminal, plain periodic lines in a
// batch log (stderr, so results on stdout/files stay clean).
#include <chrono>
#include <cstdint>
#include <string>

namespace tpinfer {

class Progress {
 public:
  Progress(int64_t total, double interval_s);
  // Called often; prints only when due.
  void update(int64_t done, int64_t errors, int64_t generated_tokens);
  // Final state (ends the live bar's line).
  void finish(int64_t done, int64_t errors, int64_t generated_tokens);
  double elapsed_s() const;
  // Restarts the clock (when generation begins, after the model load).
  void restart();

 private:
  std::string line(int64_t done, int64_t errors, int64_t generated_tokens) const;
  int64_t total_;
  double interval_s_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
  bool printed_ = false;
};

}  // namespace tpinfer
