#pragma once
// Used by `tpinfer bench --step-profile` and tests/bench/bench_engine_host.cpp.
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/engine.hpp"

namespace tpinfer {

// A step that computed one token for each row it sampled: decodes only, no prompt tokens.
inline bool decode_only(const EngineStats& before, const EngineStats& after) {
  return after.computed_tokens - before.computed_tokens ==
         after.generated_tokens - before.generated_tokens;
}

// Where an offline run's time goes, by kind of step: pure decode steps (one
// token a sequence) and steps that carry prompt tokens. Host time is a step's
// wall time outside forward() (scheduling, batch building, results); forward's
// own time includes its host work and the wait for the device.
struct StepProfile {
  struct Kind {
    int64_t steps = 0, tokens = 0, rows = 0;
    double wall = 0, forward = 0;
  } decode, prefill;
  int64_t preemptions = 0;  // sequences sent back to waiting for want of KV blocks

  void add(const EngineStats& before, const EngineStats& after, double wall, double fwd) {
    const int64_t tokens = after.computed_tokens - before.computed_tokens;
    const int64_t rows = after.generated_tokens - before.generated_tokens;
    preemptions += after.preemptions - before.preemptions;
    Kind& k = decode_only(before, after) ? decode : prefill;
    ++k.steps;
    k.tokens += tokens;
    k.rows += rows;
    k.wall += wall;
    k.forward += fwd;
  }
  static void print_kind(const char* what, const Kind& k) {
    if (k.steps == 0) return;
    std::printf(
        "  %-14s %6lld steps %9.2f s  %8.3f ms/step (forward %8.3f, host outside %6.3f)  "
        "%8.1f tokens/step %7.1f sampled/step\n",
        what, static_cast<long long>(k.steps), k.wall, 1e3 * k.wall / k.steps,
        1e3 * k.forward / k.steps, 1e3 * (k.wall - k.forward) / k.steps,
        static_cast<double>(k.tokens) / k.steps, static_cast<double>(k.rows) / k.steps);
  }
  void print(const std::string& title, double total) const {
    std::printf("%s: %.2f s\n", title.c_str(), total);
    print_kind("decode steps", decode);
    print_kind("prompt steps", prefill);
    if (preemptions > 0)
      std::printf("  %lld preemptions (the KV cache ran out; their tokens were recomputed)\n",
                  static_cast<long long>(preemptions));
    std::fflush(stdout);
  }
};

}  // namespace tpinfer
