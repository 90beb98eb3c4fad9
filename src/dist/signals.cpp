#include "dist/signals.hpp"

#include <csignal>
#include <initializer_list>

namespace tpinfer {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_drain_signal(int sig) {
  g_signal = sig;
}
}  // namespace

void install_drain_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_drain_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // MPI and file calls carry on; the step loop polls the flag
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &sa, nullptr);
}

int drain_signal() {
  return g_signal;
}

}  // namespace tpinfer
