// The host's share of an offline run's steps, without a GPU: the engine (
// scheduling, batch building, results) with a forward that only returns greedy
// tokens, at the shape of `tpinfer bench`'s offline 1000/1000 (256 requests of
// 1000 prompt and 1000 output tokens, 8192 tokens a step, block size 16). With
// the cuda backend built, each step's batch also goes through the backend's
// host-side packing and attention planning (BatchState), as set_batch does.
// Not a test: prints milliseconds per step by kind of step (StepProfile).
//   tpinfer_host_bench [REQUESTS] [PROMPT] [OUTPUT]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/step_profile.hpp"
#if TPINFER_HAVE_CUDA
#include "backend/cuda/batch_state.hpp"
#endif

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tpinfer;
  const int requests = argc > 1 ? std::atoi(argv[1]) : 256;
  const int prompt = argc > 2 ? std::atoi(argv[2]) : 1000;
  const int output = argc > 3 ? std::atoi(argv[3]) : 1000;
  EngineOptions eo;
  eo.vocab_size = 128256;
  eo.max_context = 8192;
  eo.eos_token_ids = {128001};
  eo.block_size = 16;
  eo.num_blocks = requests * ((prompt + output + 15) / 16 + 1);
  eo.max_running = 256;
  eo.max_step_tokens = 8192;
#if TPINFER_HAVE_CUDA
  cuda::BatchState packed;
#endif
  // "forward" here is the backend's host-side packing: there is no model.
  double forward_s = 0;
  Engine e(eo, [&](const BatchLayout& b, StepTokens& out) {
    const double t0 = now_s();
#if TPINFER_HAVE_CUDA
    packed.set(b);
    packed.attention_work(4);  // Llama-3-8B: 4 q heads a kv head
#endif
    out.drawn.assign(b.logit_rows.size(), {7, 0.0f});
    forward_s += now_s() - t0;
  });
  for (int i = 0; i < requests; ++i) {
    Request r;
    r.id_json = std::to_string(i);
    r.prompt.assign(static_cast<size_t>(prompt), 3 + i % 1000);
    r.sampling.max_new_tokens = output;
    r.sampling.ignore_eos = true;
    e.add(std::move(r));
  }
  const double t0 = now_s();
  StepProfile profile;
  while (e.num_unfinished() > 0) {
    const EngineStats before = e.stats();
    const double s0 = now_s(), f0 = forward_s;
    e.step();
    profile.add(before, e.stats(), now_s() - s0, forward_s - f0);
  }
  profile.print("host work of " + std::to_string(requests) + " requests x " +
                    std::to_string(prompt) + "/" + std::to_string(output) +
                    " tokens (forward = the cuda backend's packing)",
                now_s() - t0);
  return 0;
}
