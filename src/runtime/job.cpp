#include "runtime/job.hpp"

#include <optional>

namespace tpinfer {

void run_group(const World& w, Engine& engine, Coordinator* coord, int64_t refill_below) {
  const bool leader = w.is_group_leader();
  std::optional<WorkSource> source;
  if (leader) source.emplace(w.world.get(), coord);
  const ProcessGroup tp = w.tp_group();

  for (;;) {
    // control = 'S' (stop) or 'C' (continue), then the requests to add this step.
    std::string control;
    if (leader) {
      if (coord) coord->serve();
      if (engine.num_waiting() < refill_below)
        source->ask(2 * refill_below - engine.num_waiting());
      const bool idle = engine.num_unfinished() == 0;
      std::vector<Request> fresh = source->receive(idle && source->asking());
      const bool stop = idle && fresh.empty() && source->exhausted();
      control = (stop ? "S" : "C") + pack_requests(fresh);
    }
    if (w.tp > 1) tp.broadcast(control, 0);
    for (auto& r : unpack_requests(control.substr(1))) engine.add(std::move(r));
    if (control[0] == 'S') break;
    if (engine.num_unfinished() > 0) {
      std::vector<Result> finished = engine.step();
      if (leader) source->send_results(finished);
    }
  }
  if (leader) source->done();
  if (coord) coord->finish();
}

}  // namespace tpinfer
