#pragma once
// The frame every MPI subcommand (run, bench, logits) shares: MPI up for the
// whole command, the options parsed on every rank and agreed on (one rank's
// bad option fails all alike), the job run, any error mapped to its exit code.
#include <optional>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "dist/world.hpp"

namespace tpinfer {

// `parse` returns nullopt after printing --help.
template <typename Options, typename Parse, typename Job>
int run_mpi_command(int argc, char** argv, Parse parse, Job job) {
  MpiSession mpi(&argc, &argv);
  return run_reporting_errors([&] {
    std::optional<Options> options;
    agree_on(MPI_COMM_WORLD, [&] { options = parse(argc, argv); });
    return options ? job(*options) : static_cast<int>(kExitOk);
  });
}

}  // namespace tpinfer
