#pragma once
#include <boost/program_options.hpp>
#include <limits>
#include <optional>
#include <string>

namespace tpinfer {

namespace po = boost::program_options;

// Parses a subcommand's options from, in order of precedence, the command line,
// `--config FILE` (INI style: `max-new-tokens = 64`) and TPINFER_* environment
// variables (TPINFER_MAX_NEW_TOKENS=64). Adds --help and --config to `desc`.
// Returns nullopt after printing help. Throws UsageError on bad options.
std::optional<po::variables_map> parse_options(const std::string& usage,
                                               po::options_description& desc, int argc,
                                               char** argv);

// `--config X.json` names a Hugging Face model config where a subcommand takes
// one (make-model, bench), while --config is every subcommand's options file:
// rewrites it to --model-config when X ends in .json.
void accept_config_json_as_model_config(int argc, char** argv);

// Throws UsageError "--name is required" when a required option is missing.
void require(const po::variables_map& vm, const char* name);

// Throws UsageError unless `value` is a finite number (not NaN, not infinite)
// at least `low` (above it when `low_excluded`) and at most `high`:
// "--temperature nan: must be a finite number >= 0".
void check_number(const char* option, double value, double low, bool low_excluded,
                  double high = std::numeric_limits<double>::max());

}  // namespace tpinfer
