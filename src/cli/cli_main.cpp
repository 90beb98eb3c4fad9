#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>

#include "base/error.hpp"
#include "cli/commands.hpp"

namespace tpinfer {

namespace {

constexpr const char* kUsage =
    "usage: tpinfer <command> [options]   (tpinfer <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  run         the batch job: mpirun -np N tpinfer run --model M.h5 --input IN.jsonl "
    "--output OUT.jsonl [--tp T]\n"
    "  convert     convert a Hugging Face model directory (safetensors) to a model file\n"
    "  make-model  write a model with seeded random weights from a Hugging Face config.json\n"
    "  info        show a model file's config, parameter count and per-rank bytes at a TP size\n"
    "  bench       measure decode, prefill and offline throughput against the roofline\n"
    "  tokenize    text lines to token ids (or back, --decode) with a model's tokenizer\n"
    "  logits      the model's logits at every prompt position (.npy), for checks against "
    "other engines\n"
    "\n"
    "exit codes: 0 done; 2 usage, input or model error; 75 restartable failure; 1 other";

int world_rank() {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// One line per failure. An error every rank agreed on is printed by rank 0
// only, and every rank exits normally with its code; an error on one rank
// mid-run must take the others down with it, so it aborts the job.
int report(const std::string& what, int code, bool agreed) {
  const int rank = world_rank();
  if (!agreed || rank == 0) {
    if (world_size() > 1 && !agreed)
      std::fprintf(stderr, "tpinfer: error (rank %d): %s\n", rank, what.c_str());
    else
      std::fprintf(stderr, "tpinfer: error: %s\n", what.c_str());
    std::fflush(stderr);
  }
  if (!agreed && world_size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  return code;
}

}  // namespace

int run_reporting_errors(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    return report(e.what(), e.exit_code, e.agreed);
  } catch (const std::bad_alloc&) {
    return report("out of memory", kExitOther, false);
  } catch (const std::exception& e) {
    return report(e.what(), kExitOther, false);
  }
}

int cli_main(int argc, char** argv) {
  // A file size limit must surface as EFBIG from write(), not kill us.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  return run_reporting_errors([&] {
    if (cmd == "run") return run_command(argc - 1, argv + 1);
    if (cmd == "make-model") return make_model_command(argc - 1, argv + 1);
    if (cmd == "info") return info_command(argc - 1, argv + 1);
    if (cmd == "bench") return bench_command(argc - 1, argv + 1);
    if (cmd == "tokenize") return tokenize_command(argc - 1, argv + 1);
    if (cmd == "convert") return convert_command(argc - 1, argv + 1);
    if (cmd == "logits") return logits_command(argc - 1, argv + 1);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::printf("%s\n", kUsage);
      return static_cast<int>(kExitOk);
    }
    throw UsageError("unknown command '" + cmd + "'\n" + kUsage);
  });
}

}  // namespace tpinfer
