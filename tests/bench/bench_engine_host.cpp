// The host's share of an offline run's steps, without a GPU: the engine (
// scheduling, batch building, results) with a forward that only returns greedy
// tokens, at the shape of `tpinfer bench`'s offline 1000/1000 (256 requests of
// 1000 prompt and 1000 output tokens, 8192 tokens a step, block size 16). With
// the cuda backend built, each step's batch also goes through the backend's
// host-side packing and attention planning (BatchState), as set_batch does.
// Not a test: prints milliseconds per step by kind of step.
//   tpinfer_host_bench [REQUESTS] [PROMPT] [OUTPUT]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tpinfer/engine.hpp"
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
  double forward_s = 0;
  int64_t decode_steps = 0, prompt_steps = 0;
  double decode_s = 0, prompt_s = 0, decode_fwd = 0, prompt_fwd = 0;
  Engine e(eo, ForwardFn([&](const BatchLayout& b, StepLogits& out) {
             const double t0 = now_s();
#if TPINFER_HAVE_CUDA
             packed.set(b);
             packed.attention_work(4);  // Llama-3-8B: 4 q heads a kv head
#endif
             out.greedy.assign(b.logit_rows.size(), 7);
             out.full.clear();
             out.sampled.clear();
             out.sampled_logprob.clear();
             forward_s += now_s() - t0;
           }));
  for (int i = 0; i < requests; ++i) {
    Request r;
    r.id_json = std::to_string(i);
    r.prompt.assign(static_cast<size_t>(prompt), 3 + i % 1000);
    r.sampling.max_new_tokens = output;
    r.sampling.ignore_eos = true;
    e.add(std::move(r));
  }
  const double t0 = now_s();
  while (e.num_unfinished() > 0) {
    const EngineStats before = e.stats();
    const double s0 = now_s(), f0 = forward_s;
    e.step();
    const double wall = now_s() - s0, fwd = forward_s - f0;
    const bool decode = e.stats().computed_tokens - before.computed_tokens ==
                        e.stats().generated_tokens - before.generated_tokens;
    (decode ? decode_steps : prompt_steps) += 1;
    (decode ? decode_s : prompt_s) += wall;
    (decode ? decode_fwd : prompt_fwd) += fwd;
  }
  std::printf("host work of %d requests x %d/%d tokens: %.2f s\n", requests, prompt, output,
              now_s() - t0);
  auto line = [](const char* what, int64_t steps, double wall, double packing) {
    const double n = static_cast<double>(std::max<int64_t>(1, steps));
    std::printf("  %s %6lld: %.3f ms/step (engine %.3f, backend packing %.3f)\n", what,
                static_cast<long long>(steps), 1e3 * wall / n, 1e3 * (wall - packing) / n,
                1e3 * packing / n);
  };
  line("decode steps", decode_steps, decode_s, decode_fwd);
  line("prompt steps", prompt_steps, prompt_s, prompt_fwd);
  return 0;
}
