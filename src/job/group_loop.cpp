#include "job/group_loop.hpp"

#include <iterator>
#include <optional>

#include "base/error.hpp"
#include "dist/fault_injection.hpp"
#include "dist/watchdog.hpp"

namespace tpinfer {

bool run_group(const World& w, Engine& engine, Coordinator* coord, int64_t refill_below,
               health::Monitor* health) {
  const bool leader = w.is_group_leader();
  std::optional<WorkSource> source;
  if (leader) source.emplace(w.world.get(), coord);
  const ProcessGroup tp = w.tp_group();
  bool drained = false;

  for (int64_t step = 1;; ++step) {
    fault::at_step(step);  // test-only: TPINFER_FAULT
    watchdog::set_step(step);
    if (health) health->tick(engine.stats().steps, engine.num_unfinished() > 0);
    // control = 'S' (stop: all done), 'D' (drain: stop now) or 'C' (continue),
    // then, for the TP peers, the requests to add this step in their wire form;
    // a group of one rank keeps them as they are.
    std::string control;
    std::vector<Request> fresh;
    if (leader) {
      if (coord) coord->serve();
      if (source->drain_requested()) control = "D";
    }
    if (leader && control.empty()) {
      if (engine.num_waiting() < refill_below) source->ask(2 * refill_below - engine.num_waiting());
      const bool idle = engine.num_unfinished() == 0;
      fresh = source->receive(idle && source->asking());
      const bool stop = idle && fresh.empty() && source->exhausted();
      control = stop ? "S" : "C";
      if (w.tp > 1) control += pack_requests(fresh);
    }
    if (w.tp > 1) {
      watchdog::Guard guard("step_control");
      tp.broadcast(control, 0);
    }
    if (control[0] == 'D') {  // unfinished requests are redone by --resume
      drained = true;
      break;
    }
    // A request the engine refuses (say, one that can never fit the KV cache)
    // becomes its error result; every TP rank refuses it alike, so they stay in step.
    std::vector<Result> finished;
    // The leader too adds what its TP peers decode, so every rank adds the same.
    if (w.tp > 1) fresh = unpack_requests(control.substr(1));
    for (auto& r : fresh) {
      try {
        engine.add(r);
      } catch (const InputError& e) {
        Result refused;
        refused.id_json = r.id_json;
        refused.line = r.line;
        refused.prompt_tokens = static_cast<int64_t>(r.prompt.size());
        refused.error = e.what();
        refused.metadata_json = r.metadata_json;
        finished.push_back(std::move(refused));
      }
    }
    if (control[0] == 'S') break;
    if (engine.num_unfinished() > 0) {
      // The step's TP collectives are guarded one by one too; this also catches a
      // rank stuck in compute, or waiting on an asynchronous (NCCL) collective.
      watchdog::Guard guard("engine_step");
      std::vector<Result> stepped = engine.step();
      finished.insert(finished.end(), std::make_move_iterator(stepped.begin()),
                      std::make_move_iterator(stepped.end()));
    }
    if (leader) source->send_results(finished);
  }
  if (leader) source->done();
  if (coord)
    coord->finish([&] {
      if (health) health->tick(engine.stats().steps, false);
    });
  await_job_end(w.world.get(), coord != nullptr);
  return drained || (coord && coord->draining());
}

}  // namespace tpinfer
