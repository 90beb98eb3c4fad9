#pragma once
// Subcommands of the tpinfer binary.
#include <functional>
#include <string>

namespace tpinfer {

// Runs body; maps an escaping exception to its exit code after printing one
// line (on rank 0 only for errors every rank agreed on; otherwise MPI_Abort).
int run_reporting_errors(const std::function<int()>& body);

int cli_main(int argc, char** argv);
int run_command(int argc, char** argv);         // tpinfer run
int make_model_command(int argc, char** argv);  // tpinfer make-model
int info_command(int argc, char** argv);        // tpinfer info
int bench_command(int argc, char** argv);       // tpinfer bench
int tokenize_command(int argc, char** argv);    // tpinfer tokenize
int convert_command(int argc, char** argv);     // tpinfer convert
int logits_command(int argc, char** argv);      // tpinfer logits

}  // namespace tpinfer
