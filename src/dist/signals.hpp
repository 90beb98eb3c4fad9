#pragma once
// SIGTERM, SIGUSR1 (Slurm's warning before the time limit) and SIGINT ask the
// job to drain: stop taking work, write what is finished, exit 75 (restartable).
namespace tpinfer {

void install_drain_handlers();
// The signal that asked for a drain, or 0.
int drain_signal();

}  // namespace tpinfer
