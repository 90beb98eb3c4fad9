// tpinfer run: one request's path through the modules, in order: options ->
// MPI world -> weights -> backend + model -> engine -> coordinator -> output.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "backend/backend.hpp"
#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/mpi_command.hpp"
#include "cli/options.hpp"
#include "cli/replica_options.hpp"
#include "dist/fault_injection.hpp"
#include "dist/mpi_check.hpp"
#include "dist/signals.hpp"
#include "dist/watchdog.hpp"
#include "dist/world.hpp"
#include "engine/engine.hpp"
#include "job/chat_prompt.hpp"
#include "job/coordinator.hpp"
#include "job/group_loop.hpp"
#include "job/health.hpp"
#include "job/job_files.hpp"
#include "job/model_source.hpp"
#include "model/model.hpp"
#include "text/tokenizer.hpp"
#include "weights/content_hash.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

namespace {

constexpr const char* kRunUsage =
    "usage: mpirun -np N tpinfer run --model M.h5 --input IN.jsonl --output OUT.jsonl [--tp T] "
    "[options]\n"
    "Runs every request of IN.jsonl and appends one result line per request to OUT.jsonl, in\n"
    "completion order. N ranks form N/T data-parallel groups of T tensor-parallel ranks.";

struct RunOptions {
  std::string model, input, output;
  int tp = 1;
  SamplingParams defaults;
  int64_t seed = 0;  // a request's "seed" rule: an integer >= 0
  bool strict = false;
  bool resume = false;
  bool repair = false;
  ReplicaOptions replica;
  double checkpoint_interval = 10.0;
  double progress_interval = 10.0;
  double drain_timeout = 60.0;
  double collective_timeout = 300.0;
  std::string metrics;  // --metrics FILE: health metrics, one JSON line per interval
  double health_interval = 5.0;
  std::string input_format = "auto";  // auto | tpinfer | openai
  std::string chat_template;          // --chat-template FILE; empty: the model's
};

std::optional<RunOptions> parse_run_options(int argc, char** argv) {
  RunOptions o;
  po::options_description desc("tpinfer run options");
  desc.add_options()("model", po::value(&o.model), "model file (HDF5, format version 1)")(
      "input", po::value(&o.input), "requests, one JSON object a line")(
      "output", po::value(&o.output), "results file (JSON lines, appended in completion order)")(
      "tp", po::value(&o.tp)->default_value(1), "tensor-parallel size; world size = dp x tp")(
      "max-new-tokens", po::value(&o.defaults.max_new_tokens)->default_value(128),
      "default tokens to generate per request")(
      "temperature", po::value(&o.defaults.temperature)->default_value(0.0f),
      "default sampling temperature (0 = greedy)")(
      "top-k", po::value(&o.defaults.top_k)->default_value(0), "default top-k (0 = off)")(
      "top-p", po::value(&o.defaults.top_p)->default_value(1.0f), "default top-p (1 = off)")(
      "seed", po::value(&o.seed)->default_value(0),
      "job seed: a request without its own seed samples with hash(seed, id)")(
      "strict", po::bool_switch(&o.strict), "fail before any work if any input line is bad")(
      "resume", po::bool_switch(&o.resume),
      "continue OUTPUT: skip requests it already answers (the input, model and generation "
      "settings must match its manifest; the layout and backend may differ)")(
      "repair", po::bool_switch(&o.repair),
      "with --resume: when OUTPUT repeats a request's result or holds lines that are not "
      "results (two jobs wrote it at once), keep the first result of each request and move the "
      "other lines to OUTPUT.repair-dropped-TIME (without it such an output is refused)")(
      "drain-timeout", po::value(&o.drain_timeout)->default_value(60.0),
      "after SIGTERM/SIGUSR1/SIGINT: seconds the groups get to stop before the job aborts "
      "(exit 75 either way)")(
      "collective-timeout", po::value(&o.collective_timeout)->default_value(300.0),
      "seconds a collective (or an engine step, or a wait for another rank) may take before "
      "the job aborts with exit 75 (a peer hung or died)")(
      "checkpoint-interval", po::value(&o.checkpoint_interval)->default_value(10.0),
      "seconds between fsyncs of the output")(
      "progress-interval", po::value(&o.progress_interval)->default_value(10.0),
      "seconds between progress lines when stderr is not a terminal")(
      "metrics", po::value(&o.metrics),
      "append health metrics to this file: one JSON line per --health-interval (requests, "
      "tokens/s, ETA, and per rank host memory and GPU memory, utilisation, temperature, "
      "clocks, throttle reasons, ECC errors)")(
      "health-interval", po::value(&o.health_interval)->default_value(5.0),
      "seconds between health reports (metrics lines; a rank without progress is named in the "
      "log)")(
      "input-format", po::value(&o.input_format)->default_value("auto"),
      "auto | tpinfer | openai: tpinfer's request lines, or OpenAI Batch API lines "
      "(custom_id, method, url, body) answered with OpenAI batch output lines; auto decides "
      "from the first non-blank line")(
      "chat-template", po::value(&o.chat_template),
      "Jinja chat template file for requests with \"messages\", instead of the one stored in "
      "the model file");
  add_replica_options(desc, o.replica);
  auto vm = parse_options(kRunUsage, desc, argc, argv);
  if (!vm) return std::nullopt;
  require(*vm, "model");
  require(*vm, "input");
  require(*vm, "output");
  check_replica_options(o.replica);
  if (o.defaults.max_new_tokens < 1) throw UsageError("--max-new-tokens must be >= 1");
  if (o.defaults.top_k < 0) throw UsageError("--top-k must be >= 0");
  if (o.seed < 0) throw UsageError("--seed " + std::to_string(o.seed) + ": must be >= 0");
  check_number("temperature", o.defaults.temperature, 0, false);
  check_number("top-p", o.defaults.top_p, 0, true, 1);
  check_number("collective-timeout", o.collective_timeout, 0, true);
  check_number("drain-timeout", o.drain_timeout, 0, true);
  check_number("health-interval", o.health_interval, 0, true);
  check_number("progress-interval", o.progress_interval, 0, true);
  // 0 syncs after every result.
  check_number("checkpoint-interval", o.checkpoint_interval, 0, false);
  if (o.repair && !o.resume) throw UsageError("--repair goes with --resume (it repairs OUTPUT)");
  if (o.input_format != "auto" && o.input_format != "tpinfer" && o.input_format != "openai")
    throw UsageError("--input-format " + o.input_format + ": must be auto, tpinfer or openai");
  return o;
}

int run_job(const RunOptions& o) {
  const double t_start = MPI_Wtime();
  int world_rank = 0;
  TPINFER_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  const watchdog::Watchdog watchdog(o.collective_timeout, world_rank, o.drain_timeout);
  World w;
  agree_on(MPI_COMM_WORLD, [&] {
    fault::init(world_rank);  // test-only: TPINFER_FAULT
    w = make_world(o.tp);
  });

  ModelSource source = open_model_file(w, o.model, o.tp, o.replica.verify_weights == "on");
  const ModelConfig config = source.config;
  // Every rank holds the tokenizer: each engine matches stop strings itself.
  const std::shared_ptr<const Tokenizer> tokenizer = source.tokenizer;

  // Rank 0 opens input and output before the expensive load, so a bad path fails fast.
  std::unique_ptr<Coordinator> coord;
  RequestRules rules;
  rules.vocab_size = config.vocab_size;
  rules.max_context = config.max_position_embeddings;

  rules.defaults = o.defaults;
  rules.job_seed = static_cast<uint64_t>(o.seed);
  agree_on(w.world.get(), [&] {
    if (w.rank != 0) return;
    check_job_files({o.input, o.model, o.output, o.metrics});
    Coordinator::Options co;
    co.input = o.input;
    co.output = o.output;
    co.rules = rules;
    co.strict = o.strict;
    co.checkpoint_interval_s = o.checkpoint_interval;
    co.progress_interval_s = o.progress_interval;
    co.num_groups = w.dp;
    co.resume = o.resume;
    co.repair = o.repair;
    // Rank 0 alone reads and writes text: prompts to ids, results to text.
    co.tokenizer = tokenizer;
    if (o.input_format != "auto")
      co.input_format = o.input_format == "openai" ? InputFormat::kOpenAi : InputFormat::kTpinfer;
    // Conversations are rendered here too; a template the renderer cannot run
    // stops the job now, before the load.
    co.rules.chat = make_chat_prompt(
        {o.chat_template, source.file->chat_template(), o.model, config.eos_token_ids}, tokenizer,
        &co.rules.no_chat_reason);
    co.rules.model_name = std::filesystem::path(o.model).stem().string();
    co.tp = w.tp;
    // What the results depend on, compared on --resume; "run" is informational.
    const SamplingParams& d = o.defaults;
    co.manifest = {
        {"format", "tpinfer-manifest"},
        {"version", 1},
        {"input", file_fingerprint(o.input)},
        {"model", model_fingerprint(o.model)},
        {"settings",
         {{"max_new_tokens", d.max_new_tokens},
          {"temperature", d.temperature},
          {"top_k", d.top_k},
          {"top_p", d.top_p},
          {"seed", o.seed}}},
        {"run", {{"input_path", o.input}, {"model_path", o.model}, {"dp", w.dp}, {"tp", w.tp}}}};
    // An fp8 cache changes the numbers more than a backend does: a resume must
    // keep it. Only named when set, so manifests written before it still match.
    if (o.replica.kv_cache_dtype != "auto")
      co.manifest["settings"]["kv_cache_dtype"] = o.replica.kv_cache_dtype;
    // A deterministic job promises the same bytes after a resume, which holds
    // only with the mode on and at the same TP size (the sums over a layer's
    // shards change with it): both are checked on --resume.
    if (o.replica.deterministic) {
      co.manifest["settings"]["deterministic"] = true;
      co.manifest["settings"]["tp"] = w.tp;
    }
    // A template from a file changes the prompts as the model's own cannot
    // (that one is in the model's fingerprint).
    if (!o.chat_template.empty()) co.manifest["chat_template"] = file_fingerprint(o.chat_template);
    coord = std::make_unique<Coordinator>(w.world.get(), co);
  });

  std::unique_ptr<health::Monitor> health;
  agree_on(w.world.get(), [&] {
    health::Options ho;
    ho.metrics_path = o.metrics;
    ho.interval_s = o.health_interval;
    if (coord)
      ho.progress = [c = coord.get()] {
        const Tally& t = c->tally();
        return health::JobProgress{t.done,         c->total(),     t.errors, t.generated_tokens,
                                   c->elapsed_s(), t.prompt_tokens};
      };
    health = std::make_unique<health::Monitor>(w, std::move(ho));
  });

  Replica r = load_replica(w, source, o.replica);
  health->attach_gpu(r.gpu_pci_bus_id);
  const Model& model = r.model;
  Backend& backend = *r.backend;

  if (w.rank == 0) {
    // Weights, KV cache and workspace are all allocated by now, and a running
    // job never allocates more: this is the job's memory for its whole run.
    const double mib = 1 << 20;
    char memory[96];
    const MemoryInfo m = backend.memory_info();
    if (m.arena_free_bytes)
      std::snprintf(memory, sizeof memory, "%.0f MiB in use of its %.0f MiB arena",
                    static_cast<double>(m.used_bytes) / mib,
                    static_cast<double>(m.used_bytes + *m.arena_free_bytes) / mib);
    else
      std::snprintf(memory, sizeof memory, "%.0f MiB in use",
                    static_cast<double>(m.used_bytes) / mib);
    std::fprintf(stderr,
                 "tpinfer: %d ranks = dp %d x tp %d, backend %s, model %s (%lld layers, hidden "
                 "%lld) loaded in %.2f s, KV cache %d blocks of %d tokens per rank, batches of up "
                 "to %d sequences and %d tokens; rank 0: %s\n",
                 w.size, w.dp, w.tp, r.description.c_str(), o.model.c_str(),
                 static_cast<long long>(config.num_layers),
                 static_cast<long long>(config.hidden_size), MPI_Wtime() - t_start,
                 model.cache.num_blocks, o.replica.block_size, r.max_batch, r.max_step_tokens,
                 memory);
  }

  EngineOptions eo = engine_options(config, r, o.replica, r.max_batch);
  eo.tokenizer = tokenizer;
  Engine engine(eo, [&](const BatchLayout& batch, StepTokens& out) {
    step_tokens(r.model, backend, batch, out);
  });
  if (w.is_group_leader())
    health->attach_prefix_cache([&engine] {
      const EngineStats& s = engine.stats();
      return health::CacheCounters{s.cached_tokens, s.evicted_blocks, s.admitted_prompt_tokens};
    });

  if (coord) coord->start_clock();
  const bool drained = run_group(w, engine, coord.get(), r.max_batch, health.get());
  health->finish(engine.stats().steps);

  // Sum the groups' engine counters on rank 0 (leaders only, so TP copies count once).
  const EngineStats& es = engine.stats();
  const bool leader = w.is_group_leader();
  long long mine[5] = {leader ? es.computed_tokens : 0, leader ? es.preemptions : 0,
                       leader ? es.steps : 0, leader ? es.cached_tokens : 0,
                       leader ? es.evicted_blocks : 0};
  long long sum[5] = {0, 0, 0, 0, 0};
  {
    watchdog::Guard guard("job_statistics");
    TPINFER_MPI_CHECK(MPI_Reduce(mine, sum, 5, MPI_LONG_LONG, MPI_SUM, 0, w.world.get()));
  }
  if (coord) {
    const Tally& t = coord->tally();
    const double s = coord->elapsed_s();
    std::fprintf(
        stderr,
        "tpinfer: done: %lld requests (%lld errors), %lld prompt tokens, %lld generated "
        "tokens in %.2f s of generation: %.1f generated tokens/s, %.1f tokens/s computed, %lld "
        "steps, "
        "%lld preemptions, %lld prompt tokens from the prefix cache (%lld blocks evicted). "
        "Results: %s%s\n",
        static_cast<long long>(t.done), static_cast<long long>(t.errors),
        static_cast<long long>(t.prompt_tokens), static_cast<long long>(t.generated_tokens), s,
        t.generated_tokens / s, sum[0] / s, sum[2], sum[1], sum[3], sum[4], o.output.c_str(),
        coord->resumed() > 0
            ? (" (" + std::to_string(coord->resumed()) + " more from the earlier run)").c_str()
            : "");
  }
  if (drained) {
    if (coord)
      std::fprintf(stderr,
                   "tpinfer: drained on signal %d: every finished result is in %s; run again "
                   "with --resume to finish the rest (exit 75)\n",
                   drain_signal(), o.output.c_str());
    return kExitRestartable;
  }
  return kExitOk;
}

}  // namespace

int run_command(int argc, char** argv) {
  // The drain handlers go in once MPI is up (after its own handlers), as the
  // options are read.
  const auto parse = [](int c, char** v) {
    install_drain_handlers();
    return parse_run_options(c, v);
  };
  return run_mpi_command<RunOptions>(argc, argv, parse, run_job);
}

}  // namespace tpinfer
