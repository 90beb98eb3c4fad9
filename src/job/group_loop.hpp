#pragma once
#include "dist/world.hpp"
#include "engine/engine.hpp"
#include "job/coordinator.hpp"
#include "job/health.hpp"

namespace tpinfer {

// The step loop of one rank: the group leader fetches work and forwards it to
// its TP peers once per step (with a stop flag); every rank steps its Engine in
// lockstep; the leader returns finished results. `coordinator` is non-null on
// rank 0 only. `refill_below`: the leader asks for more work when fewer
// requests than this are waiting. Returns true when the group stopped on a
// drain (a signal here or at rank 0) with requests unfinished; they are redone
// by a --resume. `health` (optional) gets a tick between steps on every rank.
bool run_group(const World& world, Engine& engine, Coordinator* coordinator, int64_t refill_below,
               health::Monitor* health = nullptr);

}  // namespace tpinfer
