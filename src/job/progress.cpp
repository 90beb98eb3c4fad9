#include "job/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace tpinfer {

Progress::Progress(int64_t total, double interval_s)
    : total_(total),
      interval_s_(interval_s),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::restart() {
  start_ = last_ = std::chrono::steady_clock::now();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::line(int64_t done, int64_t errors, int64_t gen) const {
  const double t = elapsed_s();
  const double rate = t > 0 ? gen / t : 0.0;
  const double req_rate = t > 0 ? done / t : 0.0;
  char eta[32] = "?";
  if (req_rate > 0 && total_ >= done)
    std::snprintf(eta, sizeof eta, "%.0fs", static_cast<double>(total_ - done) / req_rate);
  char buf[256];
  if (tty_) {
    const int width = 30;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::snprintf(buf, sizeof buf, "[%s] %lld/%lld requests (%lld errors)  %.1f tok/s  ETA %s",
                  bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                  static_cast<long long>(errors), rate, eta);
  } else {
    std::snprintf(buf, sizeof buf,
                  "tpinfer: progress %lld/%lld requests (%lld errors), %lld tokens generated, "
                  "%.1f tok/s, %.0fs elapsed, ETA %s",
                  static_cast<long long>(done), static_cast<long long>(total_),
                  static_cast<long long>(errors), static_cast<long long>(gen), rate, t, eta);
  }
  return buf;
}

void Progress::update(int64_t done, int64_t errors, int64_t gen) {
  const auto now = std::chrono::steady_clock::now();
  const double due = tty_ ? 0.2 : interval_s_;
  if (std::chrono::duration<double>(now - last_).count() < due) return;
  last_ = now;
  if (tty_)
    std::fprintf(stderr, "\r%s\033[K", line(done, errors, gen).c_str());
  else
    std::fprintf(stderr, "%s\n", line(done, errors, gen).c_str());
  std::fflush(stderr);
  printed_ = true;
}

void Progress::finish(int64_t done, int64_t errors, int64_t gen) {
  if (tty_) std::fprintf(stderr, "\r%s\033[K\n", line(done, errors, gen).c_str());
  std::fflush(stderr);
}

}  // namespace tpinfer
