// tpinfer bench: the engine's speed on one model replica (one TP group), each
// figure a median over repeats with its ratio to the roofline of the device's
// measured ceilings (--hbm-gbs, --peak-tflops; defaults: one H200).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "cli/commands.hpp"
#include "cli/mpi_command.hpp"
#include "cli/op_profile_report.hpp"
#include "cli/options.hpp"
#include "cli/replica_options.hpp"
#include "cli/roofline.hpp"
#include "engine/engine.hpp"
#include "engine/step_profile.hpp"
#if TPINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif
#include "base/error.hpp"
#include "base/philox.hpp"
#include "job/jsonl.hpp"
#include "job/model_source.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

namespace {

struct BenchOptions {
  std::string model, model_config, json_out;
  bool random_weights = false;
  bool step_profile = false;
  bool op_profile = false;
  uint64_t seed = 0;
  int tp = 1;
  std::string scenarios = "decode1,decode64,prefill2048,offline";
  std::string fixed = "128/128,1000/1000,2048/128";
  std::vector<std::string> workloads;
  int requests = 256;
  int repeats = 5;
  int offline_repeats = 3;
  double hbm_gbs = 4300;
  double peak_tflops = 800;
  ReplicaOptions replica;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int32_t> random_prompt(int64_t len, int64_t vocab, uint64_t key) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i)
    p[i] = static_cast<int32_t>(3 + philox4x32(key, 1, static_cast<uint64_t>(i))[0] % (vocab - 3));
  return p;
}

Request bench_request(int64_t i, int64_t prompt_len, int64_t new_tokens, int64_t vocab) {
  Request r;
  r.id_json = std::to_string(i);
  r.prompt = random_prompt(prompt_len, vocab, 0xbe7c4 + static_cast<uint64_t>(i));
  r.sampling.max_new_tokens = new_tokens;
  r.sampling.ignore_eos = true;  // fixed output lengths, whatever the random model says
  return r;
}

// For each request, the prompt tokens a perfect prefix cache would skip: its
// longest common prefix with the request before it in lexicographic order
// (together, each distinct prompt prefix computed once), less its last token,
// which must be computed for the first output.
std::vector<int64_t> shared_prefix_tokens(const std::vector<Request>& reqs) {
  std::vector<size_t> order(reqs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return reqs[a].prompt < reqs[b].prompt; });
  std::vector<int64_t> shared(reqs.size(), 0);
  for (size_t k = 1; k < order.size(); ++k) {
    const auto& prev = reqs[order[k - 1]].prompt;
    const auto& cur = reqs[order[k]].prompt;
    const auto lcp =
        std::mismatch(prev.begin(), prev.end(), cur.begin(), cur.end()).first - prev.begin();
    shared[order[k]] = std::min<int64_t>(lcp, static_cast<int64_t>(cur.size()) - 1);
  }
  return shared;
}

struct Bench {
  const World& w;
  const BenchOptions& o;
  const ModelConfig& c;
  Replica& r;
  int64_t weight_bytes_streamed = 0;  // per rank, per forward (embedding rows excluded)
  int64_t flops_per_token = 0;        // per rank, 2 x streamed parameters
  int64_t kv_bytes_per_token = 0;     // per rank
  nlohmann::json results = nlohmann::json::array();
  double forward_s = 0;  // wall time inside forward(), summed (for --step-profile)

  std::unique_ptr<Engine> engine(int max_running) {
    return std::make_unique<Engine>(engine_options(c, r, o.replica, max_running),
                                    [this](const BatchLayout& b, StepTokens& out) {
                                      const double t0 = now_s();
                                      step_tokens(r.model, *r.backend, b, out);
                                      forward_s += now_s() - t0;
                                    });
  }

  // `extra`: fields a scenario adds to its JSON entry; `extra_text` ends its printed line.
  void report(const std::string& name, double value, const std::string& unit, double roofline,
              const std::string& roofline_what, const std::vector<double>& samples,
              const nlohmann::json& extra = nlohmann::json::object(),
              const std::string& extra_text = "") {
    const double ratio =
        roofline > 0 ? (unit == "ms/token" ? roofline / value : value / roofline) : 0;
    nlohmann::json entry = {{"scenario", name},
                            {"value", value},
                            {"unit", unit},
                            {"roofline", roofline},
                            {"roofline_basis", roofline_what},
                            {"ratio_to_roofline", ratio},
                            {"samples", samples}};
    entry.update(extra);
    results.push_back(std::move(entry));
    if (w.rank == 0) {
      std::printf("%-28s %12.2f %-20s roofline %10.2f (%s)  ratio %.3f%s\n", name.c_str(), value,
                  unit.c_str(), roofline, roofline_what.c_str(), ratio, extra_text.c_str());
      std::fflush(stdout);
    }
  }

  // Decode at batch B after P-token prompts (default 128, whose names the
  // earlier logs used): time each pure decode step.
  void decode(int batch, int64_t prompt) {
    const int64_t warmup = 4, timed = 32;
    const std::string at = prompt == 128 ? "" : " at context " + std::to_string(prompt);
    const std::string name = "decode batch " + std::to_string(batch) + at;
    if (batch > r.max_batch)
      throw UsageError(name + ": more sequences than --max-batch " + std::to_string(r.max_batch) +
                       " (the workspace is sized for that many)");
    // Sequences prefilled first decode while later prompts are still being
    // prefilled: those early ones must last through the timed steps too. A step
    // decodes the running ones first; prompts get what is left of its budget.
    const int64_t prompt_budget = std::max<int64_t>(1, r.max_step_tokens - batch);
    const int64_t prompt_steps = (batch * prompt + prompt_budget - 1) / prompt_budget + 1;
    const int64_t longest = prompt + 1 + prompt_steps + warmup + timed;
    if (longest > c.max_position_embeddings)
      throw UsageError(name + ": " + std::to_string(longest) +
                       " tokens a sequence, longer than "
                       "the model's context " +
                       std::to_string(c.max_position_embeddings));
    // Preemptions would time a smaller batch than the name says.
    const int64_t per_seq = (longest + o.replica.block_size - 1) / o.replica.block_size;
    if (per_seq * batch > r.model.cache.num_blocks) {
      if (w.rank == 0)
        std::printf(
            "%s: skipped, needs %lld KV blocks and the cache has %d (a smaller batch or "
            "context fits, or --kv-cache-dtype fp8)\n",
            name.c_str(), static_cast<long long>(per_seq * batch), r.model.cache.num_blocks);
      return;
    }
    std::vector<double> per_repeat;
    int64_t extra_tokens = 0;  // decoded during prefill, by the first-prefilled sequence, summed
    for (int rep = 0; rep < o.repeats; ++rep) {
      auto e = engine(batch);
      for (int i = 0; i < batch; ++i)
        e->add(bench_request(i, prompt, longest - prompt, c.vocab_size));
      // Until a step is pure decode: every sequence is past its prompt.
      for (bool prompt_left = true; prompt_left;) {
        const EngineStats before = e->stats();
        e->step();
        prompt_left = !decode_only(before, e->stats()) || e->num_waiting() > 0;
        if (prompt_left) ++extra_tokens;
      }
      for (int i = 0; i < warmup; ++i) e->step();
      std::vector<double> steps;
      for (int i = 0; i < timed; ++i) {
        const EngineStats before = e->stats();
        const double t0 = now_s();
        e->step();
        steps.push_back(now_s() - t0);
        // What is timed is one token for each of the batch's sequences, nothing else.
        const EngineStats& after = e->stats();
        if (!decode_only(before, after) ||
            after.generated_tokens - before.generated_tokens != batch)
          throw std::logic_error(name + ": a timed step computed " +
                                 std::to_string(after.computed_tokens - before.computed_tokens) +
                                 " tokens, not one for each of the batch's sequences");
      }
      per_repeat.push_back(median(steps));
      while (e->num_unfinished() > 0) e->step();
    }
    const double step_s = median(per_repeat);
    // Mean context over the timed steps: sequences entered decode between 0 and
    // extra_tokens / repeats steps before the last one did.
    const double ctx = prompt + 1 + extra_tokens / (2.0 * o.repeats) + warmup + timed / 2.0;
    const double floor_s =
        (weight_bytes_streamed + batch * ctx * kv_bytes_per_token) / (o.hbm_gbs * 1e9);
    std::vector<double> ms;
    for (double s : per_repeat) ms.push_back(batch == 1 ? s * 1e3 : batch / s);
    if (batch == 1)
      report(name, step_s * 1e3, "ms/token", floor_s * 1e3, "weights+KV / HBM", ms);
    else
      report(name, batch / step_s, "tokens/s", batch / floor_s, "weights+KV / HBM", ms);
  }

  void prefill(int64_t len) {
    std::vector<double> times;
    for (int rep = 0; rep < o.repeats + 1; ++rep) {
      auto e = engine(1);
      e->add(bench_request(rep, len, 1, c.vocab_size));
      const double t0 = now_s();
      while (e->num_unfinished() > 0) e->step();
      if (rep > 0) times.push_back(now_s() - t0);  // the first is a warm-up
    }
    const double t = median(times);
    // Linear layers plus causal attention (QK^T and PV over half the square on average).
    const double floor_s =
        (static_cast<double>(flops_per_token) * len + flops_per_context() * (len * len / 2.0)) /
        (o.peak_tflops * 1e12);
    std::vector<double> tps;
    for (double s : times) tps.push_back(len / s);
    report("prefill " + std::to_string(len), len / t, "tokens/s", len / floor_s, "FLOPs / peak",
           tps);
  }

  // Attention FLOPs (QK^T and PV) per key a token attends to, all layers.
  double flops_per_context() const {
    return 2.0 * 2.0 * c.num_layers * r.model.shard.q_heads * c.head_dim;
  }

  void offline(const std::string& name, const std::vector<Request>& reqs) {
    std::vector<std::pair<int64_t, int64_t>> shapes;  // (prompt, outputs) a request
    int64_t output_tokens = 0, prompt_tokens = 0;
    for (const auto& q : reqs) {
      shapes.emplace_back(static_cast<int64_t>(q.prompt.size()), q.sampling.max_new_tokens);
      output_tokens += q.sampling.max_new_tokens;
      // Each of n completions is a sequence that takes its prompt from the
      // cache or computes it (the engine counts cached tokens by sequence).
      prompt_tokens += static_cast<int64_t>(q.prompt.size()) * q.n;
    }
    std::vector<double> tps;
    // With the cache, the floor computes each distinct prompt prefix once (a
    // shorter prompt also shortens the attention and KV reads the floor
    // counts: it stays a lower bound).
    if (o.replica.prefix_cache == "on") {
      const std::vector<int64_t> shared = shared_prefix_tokens(reqs);
      for (size_t i = 0; i < shapes.size(); ++i) shapes[i].first -= shared[i];
    }
    // Each repeat starts a fresh engine (an empty cache), so these are one
    // run's counters; every repeat schedules the same way, so the last stands for all.
    int64_t cached_tokens = 0, evicted_blocks = 0;
    for (int rep = 0; rep < o.offline_repeats; ++rep) {
#if TPINFER_HAVE_CUDA
      if (o.op_profile) take_cuda_op_profile(*r.backend);  // only this run's steps
#endif
      auto e = engine(r.max_batch);
      const double t0 = now_s();
      for (const auto& q : reqs) e->add(q);
      int64_t generated = 0;
      StepProfile profile;
      while (e->num_unfinished() > 0) {
        const EngineStats before = e->stats();
        const double s0 = now_s(), f0 = forward_s;
        for (const auto& res : e->step())
          for (const Completion& c : res.choices)
            generated += static_cast<int64_t>(c.tokens.size());
        profile.add(before, e->stats(), now_s() - s0, forward_s - f0);
      }
      tps.push_back(generated / (now_s() - t0));
      cached_tokens = e->stats().cached_tokens;
      evicted_blocks = e->stats().evicted_blocks;
      if (o.step_profile && w.rank == 0) {
        profile.print("step profile of offline " + name, now_s() - t0);
#if TPINFER_HAVE_CUDA
        const CudaGraphStats g = cuda_graph_stats(*r.backend);
        std::printf("  cuda graphs so far: %lld recorded, %lld replayed\n",
                    static_cast<long long>(g.recorded), static_cast<long long>(g.replayed));
#endif
      }
#if TPINFER_HAVE_CUDA
      if (o.op_profile) {
        const OpProfile ops = take_cuda_op_profile(*r.backend);
        if (w.rank == 0)
          std::printf("op profile of offline %s (rank 0):\n%s", name.c_str(),
                      op_profile_report(ops, o.hbm_gbs, o.peak_tflops).c_str());
      }
#endif
    }
    RooflineModel m;
    m.flops_per_token = static_cast<double>(flops_per_token);
    m.flops_per_context = flops_per_context();
    m.weight_bytes = static_cast<double>(weight_bytes_streamed);
    m.kv_bytes_per_token = static_cast<double>(kv_bytes_per_token);
    m.max_batch = r.max_batch;
    m.max_step_tokens = r.max_step_tokens;
    m.peak_flops = o.peak_tflops * 1e12;
    m.hbm_bytes = o.hbm_gbs * 1e9;
    const RooflineFloor floor = offline_floor(shapes, m);
    const double hit_rate =
        prompt_tokens > 0 ? static_cast<double>(cached_tokens) / prompt_tokens : 0;
    char text[192];
    std::snprintf(text, sizeof text,
                  "  floor: FLOPs %.2f s, bytes %.2f s; prefix cache %s: hit rate %.3f, %lld "
                  "blocks evicted",
                  floor.compute_s, floor.memory_s, o.replica.prefix_cache.c_str(), hit_rate,
                  static_cast<long long>(evicted_blocks));
    report("offline " + name, median(tps), "output tokens/s", output_tokens / floor.seconds(),
           floor.memory_bound() ? "weights+KV / HBM" : "FLOPs / peak", tps,
           {{"prompt_tokens", prompt_tokens},
            {"floor_flops_seconds", floor.compute_s},
            {"floor_bytes_seconds", floor.memory_s},
            {"cached_tokens", cached_tokens},
            {"prefix_cache_hit_rate", hit_rate},
            {"evicted_blocks", evicted_blocks}},
           text);
  }
};

// "decodeB" or "decodeB@P": decode at batch B after P-token prompts (default 128).
std::optional<std::pair<int, int64_t>> parse_decode_scenario(const std::string& s) {
  const std::string head = "decode";
  if (s.rfind(head, 0) != 0) return std::nullopt;
  const std::string rest = s.substr(head.size());
  const auto at = rest.find('@');
  auto number = [&](const std::string& digits) -> int64_t {
    if (digits.empty() || digits.size() > 7 ||
        digits.find_first_not_of("0123456789") != std::string::npos || std::stoll(digits) < 1)
      throw UsageError("--scenarios " + s +
                       ": expected decodeB or decodeB@CONTEXT, B and CONTEXT >= 1");
    return std::stoll(digits);
  };
  const int64_t batch = number(rest.substr(0, at));
  const int64_t prompt = at == std::string::npos ? 128 : number(rest.substr(at + 1));
  return std::make_pair(static_cast<int>(batch), prompt);
}

std::vector<Request> read_workload(const std::string& path, const ModelConfig& c) {
  RequestRules rules;
  rules.vocab_size = c.vocab_size;
  rules.max_context = c.max_position_embeddings;
  RequestReader reader(path, rules);
  std::vector<Request> out;
  while (auto line = reader.next()) {
    if (line->error) throw InputError("workload " + path + ": " + line->error->error);
    out.push_back(std::move(*line->request));
  }
  return out;
}

int bench_job(const BenchOptions& o) {
  const World w = single_replica_world(o.tp, "bench");
  ModelSource source = o.random_weights
                           ? random_model(w, o.model_config, o.tp, o.seed)
                           : open_model_file(w, o.model, o.tp, o.replica.verify_weights == "on");
  const ModelConfig config = source.config;
  const double t0 = MPI_Wtime();
  Replica r = load_replica(w, source, o.replica);
  if (o.op_profile && r.backend->device_kind() != DeviceKind::cuda)
    throw UsageError("--op-profile times the cuda backend's ops; this run is on the " +
                     r.backend->name() + " backend");

  Bench b{w, o, config, r};
  const int bytes = dtype_bytes(r.backend->compute_dtype());
  int64_t params = 0;
  for (const auto& t : expected_tensors(config))
    if (t.name != "model.embed_tokens.weight" || config.tie_word_embeddings)
      params += shard_of(config, t, w.tp_rank, w.tp).numel();
  b.weight_bytes_streamed = params * bytes;
  b.flops_per_token = 2 * params;
  b.kv_bytes_per_token = kv_bytes_per_block(config, r.model.shard, 1, r.kv_dtype);
  if (w.rank == 0)
    std::printf(
        "tpinfer bench: %s, tp %d, backend %s, %s weights, loaded in %.2f s; %.2f GB of "
        "weights streamed per rank per step; KV cache %d blocks of %d; offline batches of up to %d "
        "sequences and %d tokens; ceilings %.0f GB/s, %.0f TFLOP/s\n",
        config.architecture.c_str(), w.tp, r.description.c_str(),
        o.random_weights ? "random" : "file", MPI_Wtime() - t0, b.weight_bytes_streamed / 1e9,
        r.model.cache.num_blocks, o.replica.block_size, r.max_batch, r.max_step_tokens, o.hbm_gbs,
        o.peak_tflops);

  std::stringstream scenarios(o.scenarios);
  for (std::string s; std::getline(scenarios, s, ',');) {
    if (const auto d = parse_decode_scenario(s)) {
      b.decode(d->first, d->second);
    } else if (s == "prefill2048") {
      b.prefill(std::min<int64_t>(2048, config.max_position_embeddings - 1));
    } else if (s == "offline") {
      std::stringstream shapes(o.fixed);
      for (std::string shape; std::getline(shapes, shape, ',');) {
        const auto slash = shape.find('/');
        if (slash == std::string::npos) throw UsageError("--fixed " + shape + ": expected ISL/OSL");
        const int64_t isl = std::stoll(shape.substr(0, slash)),
                      osl = std::stoll(shape.substr(slash + 1));
        if (isl + osl > config.max_position_embeddings) {
          if (w.rank == 0)
            std::printf("offline %s: skipped, longer than the model's context %lld\n",
                        shape.c_str(), static_cast<long long>(config.max_position_embeddings));
          continue;
        }
        std::vector<Request> reqs;
        for (int i = 0; i < o.requests; ++i)
          reqs.push_back(bench_request(i, isl, osl, config.vocab_size));
        b.offline(shape + " x" + std::to_string(o.requests), reqs);
      }
      for (const auto& path : o.workloads) b.offline(path, read_workload(path, config));
    } else if (!s.empty()) {
      throw UsageError("--scenarios: unknown scenario '" + s +
                       "' (decodeB[@CONTEXT], prefill2048, offline)");
    }
  }
  if (w.rank == 0 && !o.json_out.empty()) {
    std::ofstream out(o.json_out);
    out << nlohmann::json{{"config", config_to_json(config)},
                          {"backend", r.description},
                          {"tp", w.tp},
                          {"max_batch", r.max_batch},
                          {"max_step_tokens", r.max_step_tokens},
                          {"prefix_cache", o.replica.prefix_cache},
                          {"hbm_gbs", o.hbm_gbs},
                          {"peak_tflops", o.peak_tflops},
                          {"results", b.results}}
               .dump(2)
        << "\n";
    if (!out) throw Error("cannot write " + o.json_out, kExitOther);
  }
  return kExitOk;
}

std::optional<BenchOptions> parse_bench_options(int argc, char** argv) {
  BenchOptions o;
  po::options_description desc("tpinfer bench options");
  desc.add_options()("model", po::value(&o.model), "model file (HDF5)")(
      "model-config", po::value(&o.model_config),
      "Hugging Face config.json (with --random-weights)")(
      "random-weights", po::bool_switch(&o.random_weights),
      "make seeded random weights on the device instead of reading a file")(
      "step-profile", po::bool_switch(&o.step_profile),
      "after each offline run, print where its time went by kind of step")(
      "op-profile", po::bool_switch(&o.op_profile),
      "cuda: time every op of every step on the device and print, after each offline run, "
      "where a step's device time went (turns CUDA graphs off, so runs are slower)")(
      "seed", po::value(&o.seed)->default_value(0), "seed of the random weights")(
      "tp", po::value(&o.tp)->default_value(1), "tensor-parallel size (= ranks)")(
      "scenarios", po::value(&o.scenarios)->default_value(o.scenarios),
      "comma list of decodeB[@CONTEXT] (decode1, decode64, decode256@1500, ...), "
      "prefill2048, offline")("fixed", po::value(&o.fixed)->default_value(o.fixed),
                              "offline fixed-length workloads, ISL/OSL comma list")(
      "workload", po::value(&o.workloads)->composing(),
      "offline workload JSONL (tools/make_workload.py); repeatable")(
      "requests", po::value(&o.requests)->default_value(256), "requests per fixed workload")(
      "repeats", po::value(&o.repeats)->default_value(5), "repeats of decode and prefill")(
      "offline-repeats", po::value(&o.offline_repeats)->default_value(3),
      "repeats of offline runs")("hbm-gbs", po::value(&o.hbm_gbs)->default_value(4300),
                                 "memory-bandwidth ceiling, GB/s")(
      "peak-tflops", po::value(&o.peak_tflops)->default_value(800), "matrix ceiling, TFLOP/s")(
      "json", po::value(&o.json_out), "also write the results as JSON here");
  add_replica_options(desc, o.replica);
  accept_config_json_as_model_config(argc, argv);
  auto vm = parse_options(
      "usage: [mpirun -np T] tpinfer bench (--model M.h5 | --model-config CONFIG.json "
      "--random-weights) [--tp T] [options]",
      desc, argc, argv);
  if (!vm) return std::nullopt;
  if (o.random_weights != o.model.empty() || (o.random_weights && o.model_config.empty()))
    throw UsageError("give either --model M.h5 or --model-config CONFIG.json --random-weights");
  check_replica_options(o.replica);
  o.replica.cuda_op_profile = o.op_profile;
  if (o.repeats < 1 || o.offline_repeats < 1 || o.requests < 1)
    throw UsageError("--repeats, --offline-repeats and --requests must be >= 1");
  return o;
}

}  // namespace

int bench_command(int argc, char** argv) {
  return run_mpi_command<BenchOptions>(argc, argv, parse_bench_options, bench_job);
}

}  // namespace tpinfer
