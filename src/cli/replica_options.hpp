#pragma once
// The command-line options of a replica (backend, KV cache, batch sizes),
// shared by `run`, `bench` and `logits`.
#include "cli/options.hpp"
#include "job/replica.hpp"

namespace tpinfer {

// The options' defaults are o's values, so a command presets its own before.
void add_replica_options(po::options_description& desc, ReplicaOptions& o);
void check_replica_options(const ReplicaOptions& o);  // throws UsageError

}  // namespace tpinfer
