// tpinfer logits: the model's fp32 logits at every prompt position (or the
// last), for checking tpinfer against another implementation of the same model
// (tools/hf_compare.py) and for debugging. One replica (world size = --tp);
// each prompt is prefilled alone, in chunks of --max-step-tokens.
//
// OUTPUT is a NumPy .npy file (format 1.0, dtype '<f4', C order) of shape
// (rows, vocab_size): the prompts' rows in input order, one row per position
// (--positions all) or one per prompt (last). OUTPUT.json indexes it:
//   {"format": "tpinfer-logits", "version": 1, "vocab_size": V, "rows": R,
//    "positions": "all", "model": ..., "backend": ..., "tp": T,
//    "prompts": [{"id": <as in the input>, "row": first row, "rows": n,
//                 "prompt_tokens": [...], "greedy": [argmax of each row]}]}
// Row r of a prompt with --positions all is the distribution of the token
// after prompt position r; greedy[r] is its argmax (lowest id on ties).
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/sampler.hpp"
#include "cli/commands.hpp"
#include "cli/mpi_command.hpp"
#include "cli/options.hpp"
#include "cli/replica_options.hpp"
#include "dist/world.hpp"
#include "job/jsonl.hpp"
#include "job/model_source.hpp"
#include "model/model.hpp"
#include "text/tokenizer.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

namespace {

constexpr const char* kLogitsUsage =
    "usage: [mpirun -np T] tpinfer logits --model M.h5 --input PROMPTS.jsonl --output LOGITS.npy "
    "[--tp T] [--positions all|last]\n"
    "Writes the fp32 logits of every prompt position (or the last) as a .npy array of shape\n"
    "(rows, vocab) and an index LOGITS.npy.json (ids, rows, prompt tokens, greedy tokens).\n"
    "PROMPTS.jsonl: {\"id\": .., \"prompt_tokens\": [..]} or {\"id\": .., \"prompt\": \"text\"} "
    "(text needs a model with a tokenizer and gets its BOS token, as in tpinfer run).";

struct LogitsOptions {
  std::string model, input, output, positions = "all";
  int tp = 1;
  ReplicaOptions replica;
};

std::optional<LogitsOptions> parse_logits_options(int argc, char** argv) {
  LogitsOptions o;
  po::options_description desc("tpinfer logits options");
  desc.add_options()("model", po::value(&o.model), "model file (HDF5, format version 1)")(
      "input", po::value(&o.input), "prompts, one JSON object a line")(
      "output", po::value(&o.output), "logits file (.npy); its index goes to OUTPUT.json")(
      "tp", po::value(&o.tp)->default_value(1), "tensor-parallel size (= the world size)")(
      "positions", po::value(&o.positions)->default_value("all"),
      "all: a row per prompt position; last: a row per prompt")(
      "backend", po::value(&o.replica.backend)->default_value("auto"), "cpu | cuda | auto")(
      "collectives", po::value(&o.replica.collectives)->default_value("auto"),
      "cuda TP collectives: nccl | mpi | auto (mpi exactly when TP ranks share a GPU)")(
      "memory-fraction", po::value(&o.replica.memory_fraction)->default_value(0.9),
      "cuda: share of free GPU memory to take (split among ranks on one GPU)")(
      "threads", po::value(&o.replica.threads)->default_value(0),
      "cpu backend threads per rank (0 = cores / ranks on this node)")(
      "max-step-tokens", po::value(&o.replica.max_step_tokens)->default_value(256),
      "prompt tokens per forward step (longer prompts are prefilled in chunks)")(
      "kv-cache-dtype", po::value(&o.replica.kv_cache_dtype)->default_value("auto"),
      "KV-cache storage: auto (the compute dtype) | fp8 (float8 e4m3: attention reads every key "
      "and value rounded to it)");
  auto vm = parse_options(kLogitsUsage, desc, argc, argv);
  if (!vm) return std::nullopt;
  require(*vm, "model");
  require(*vm, "input");
  require(*vm, "output");
  if (o.positions != "all" && o.positions != "last")
    throw UsageError("--positions " + o.positions + " is not one of all, last");
  if (o.tp < 1) throw UsageError("--tp must be >= 1");
  // Every row of a step is a logit row, so the workspace holds a step's worth.
  o.replica.max_batch = o.replica.max_step_tokens;
  check_replica_options(o.replica);
  return o;
}

struct Prompt {
  std::string id_json;
  std::vector<int32_t> tokens;
};

// Rank 0 reads and tokenizes the prompts; any bad line fails the whole run
// (a check tool must not silently drop a prompt).
std::vector<Prompt> read_prompts(const std::string& path, const ModelConfig& c,
                                 std::shared_ptr<const Tokenizer> tokenizer) {
  RequestRules rules;
  rules.vocab_size = c.vocab_size;
  rules.max_context = c.max_position_embeddings;
  rules.tokenizer = std::move(tokenizer);
  RequestReader reader(path, rules);
  std::vector<Prompt> out;
  while (auto line = reader.next()) {
    if (line->error) throw InputError(path + ": " + line->error->error);
    out.push_back({line->request->id_json, std::move(line->request->prompt)});
  }
  if (out.empty()) throw InputError(path + ": no prompts");
  return out;
}

std::string prompts_to_wire(const std::vector<Prompt>& ps) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& p : ps) j.push_back({p.id_json, p.tokens});
  return j.dump();
}

std::vector<Prompt> prompts_from_wire(const std::string& s) {
  std::vector<Prompt> out;
  for (const auto& e : nlohmann::json::parse(s))
    out.push_back({e[0].get<std::string>(), e[1].get<std::vector<int32_t>>()});
  return out;
}

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// The .npy array, written to PATH.part and renamed into place when complete,
// so a failed run never leaves a plausible-looking file.
class NpyWriter {
 public:
  NpyWriter(const std::string& path, int64_t rows, int64_t cols)
      : path_(path), part_(path + ".part"), f_(std::fopen(part_.c_str(), "wb")) {
    static_assert(std::endian::native == std::endian::little, "the .npy data is written as '<f4'");
    if (!f_) throw InputError("cannot create " + part_ + ": " + std::strerror(errno));
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                         std::to_string(rows) + ", " + std::to_string(cols) + "), }";
    // Version 1.0: magic, 2 version bytes, a 2-byte header length, then the
    // header padded with spaces to a multiple of 64 bytes, ending in '\n'.
    const size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    std::string pre = "\x93NUMPY\x01";
    pre += '\0';
    pre += static_cast<char>(header.size() & 0xff);
    pre += static_cast<char>(header.size() >> 8);
    put(pre.data(), pre.size());
    put(header.data(), header.size());
  }
  ~NpyWriter() {
    if (f_) std::remove(part_.c_str());  // not committed: an error is on its way
  }
  void write(const float* data, size_t n) { put(data, n * sizeof(float)); }
  void commit() {
    std::FILE* f = f_.release();
    if (std::fflush(f) != 0 || std::fclose(f) != 0) {
      const int e = errno;
      std::remove(part_.c_str());
      throw Error("cannot write " + part_ + ": " + std::strerror(e), kExitOther);
    }
    if (std::rename(part_.c_str(), path_.c_str()) != 0)
      throw Error("cannot rename " + part_ + " to " + path_ + ": " + std::strerror(errno),
                  kExitOther);
  }

 private:
  void put(const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f_.get()) != n)
      throw Error("cannot write " + part_ + ": " + std::strerror(errno), kExitOther);
  }
  std::string path_, part_;
  File f_;
};

void write_text_file(const std::string& path, const std::string& text) {
  const std::string part = path + ".part";
  {
    File f(std::fopen(part.c_str(), "wb"));
    if (!f) throw InputError("cannot create " + part + ": " + std::strerror(errno));
    if (std::fwrite(text.data(), 1, text.size(), f.get()) != text.size() ||
        std::fclose(f.release()) != 0)
      throw Error("cannot write " + part + ": " + std::strerror(errno), kExitOther);
  }
  if (std::rename(part.c_str(), path.c_str()) != 0)
    throw Error("cannot rename " + part + " to " + path + ": " + std::strerror(errno), kExitOther);
}

// One prompt's prefill, chunk by chunk, in cache blocks 0, 1, 2, ...:
// the logit rows (all positions, or the last), vocab_size floats each.
void prefill_logits(Replica& r, const Prompt& p, bool all_positions, int chunk,
                    const std::function<void(const std::vector<float>&)>& sink) {
  const int bs = r.model.cache.block_size;
  const int64_t n = static_cast<int64_t>(p.tokens.size());
  BatchLayout b;
  b.block_size = bs;
  b.max_blocks_per_seq = static_cast<int32_t>((n + bs - 1) / bs);
  for (int32_t i = 0; i < b.max_blocks_per_seq; ++i) b.block_tables.push_back(i);
  std::vector<float> out;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t end = std::min(n, start + chunk);
    b.token_ids.assign(p.tokens.begin() + start, p.tokens.begin() + end);
    b.positions.clear();
    b.slot_mapping.clear();
    b.logit_rows.clear();
    for (int64_t pos = start; pos < end; ++pos) {
      b.positions.push_back(static_cast<int32_t>(pos));
      b.slot_mapping.push_back(static_cast<int32_t>(pos));  // block pos/bs is block pos/bs
      if (all_positions || pos == n - 1) b.logit_rows.push_back(static_cast<int32_t>(pos - start));
    }
    b.query_start = {0, static_cast<int32_t>(end - start)};
    b.context_len = {static_cast<int32_t>(end)};
    forward(r.model, *r.backend, b, out);
    if (!b.logit_rows.empty()) sink(out);
  }
}

int logits_job(const LogitsOptions& o) {
  const double t_start = MPI_Wtime();
  const World w = single_replica_world(o.tp, "logits");
  ModelSource source = open_model_file(w, o.model, o.tp, /*verify_weights=*/true);
  const ModelConfig config = source.config;

  std::string wire;
  std::unique_ptr<NpyWriter> npy;
  std::vector<Prompt> prompts;
  agree_on(w.world.get(), [&] {
    if (w.rank != 0) return;
    prompts = read_prompts(o.input, config, source.tokenizer);
    int64_t rows = 0;
    for (const auto& p : prompts)
      rows += o.positions == "all" ? static_cast<int64_t>(p.tokens.size()) : 1;
    npy = std::make_unique<NpyWriter>(o.output, rows, config.vocab_size);
    wire = prompts_to_wire(prompts);
  });
  w.tp_group().broadcast(wire, 0);
  if (w.rank != 0) prompts = prompts_from_wire(wire);

  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.tokens.size());
  ReplicaOptions ro = o.replica;
  ro.kv_blocks = static_cast<int64_t>((longest + ro.block_size - 1) / ro.block_size);
  Replica r = load_replica(w, source, ro);

  const bool all = o.positions == "all";
  nlohmann::json index_prompts = nlohmann::json::array();
  int64_t row = 0;
  for (const auto& p : prompts) {
    std::vector<int32_t> greedy;
    prefill_logits(r, p, all, ro.max_step_tokens, [&](const std::vector<float>& rows) {
      const size_t v = static_cast<size_t>(config.vocab_size);
      for (size_t k = 0; k < rows.size(); k += v)
        greedy.push_back(greedy_token(std::span<const float>(rows.data() + k, v)));
      if (npy) npy->write(rows.data(), rows.size());
    });
    if (w.rank != 0) continue;
    index_prompts.push_back({{"id", nlohmann::json::parse(p.id_json)},
                             {"row", row},
                             {"rows", static_cast<int64_t>(greedy.size())},
                             {"prompt_tokens", p.tokens},
                             {"greedy", greedy}});
    row += static_cast<int64_t>(greedy.size());
  }
  agree_on(w.world.get(), [&] {
    if (w.rank != 0) return;
    npy->commit();
    const nlohmann::json index = {{"format", "tpinfer-logits"},      {"version", 1},
                                  {"vocab_size", config.vocab_size}, {"rows", row},
                                  {"positions", o.positions},        {"model", o.model},
                                  {"backend", r.description},        {"tp", w.tp},
                                  {"prompts", index_prompts}};
    write_text_file(o.output + ".json", index.dump() + "\n");
    std::fprintf(stderr,
                 "tpinfer logits: %zu prompts, %lld rows of %lld logits, tp %d, backend %s, in "
                 "%.2f s: %s (index %s.json)\n",
                 prompts.size(), static_cast<long long>(row),
                 static_cast<long long>(config.vocab_size), w.tp, r.description.c_str(),
                 MPI_Wtime() - t_start, o.output.c_str(), o.output.c_str());
  });
  return kExitOk;
}

}  // namespace

int logits_command(int argc, char** argv) {
  return run_mpi_command<LogitsOptions>(argc, argv, parse_logits_options, logits_job);
}

}  // namespace tpinfer
