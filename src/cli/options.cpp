#include "cli/options.hpp"

#include <cctype>
#include <cmath>
#include <iostream>
#include <sstream>

#include "base/error.hpp"

namespace tpinfer {

std::optional<po::variables_map> parse_options(const std::string& usage,
                                               po::options_description& desc, int argc,
                                               char** argv) {
  desc.add_options()("help,h", "show this help")(
      "config", po::value<std::string>(), "read options from this INI-style file (key = value)");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return std::nullopt;
    }
    if (vm.count("config")) {
      const auto path = vm["config"].as<std::string>();
      po::store(po::parse_config_file(path.c_str(), desc), vm);
    }
    // TPINFER_MAX_NEW_TOKENS -> max-new-tokens, for options that desc knows.
    po::store(po::parse_environment(desc,
                                    [&desc](const std::string& env) -> std::string {
                                      const std::string prefix = "TPINFER_";
                                      if (env.rfind(prefix, 0) != 0) return "";
                                      std::string name = env.substr(prefix.size());
                                      for (auto& ch : name)
                                        ch = ch == '_' ? '-' : static_cast<char>(std::tolower(ch));
                                      return desc.find_nothrow(name, false) ? name : "";
                                    }),
              vm);
    po::notify(vm);
  } catch (const po::reading_file& e) {
    throw UsageError(std::string(e.what()));
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }
  return vm;
}

void accept_config_json_as_model_config(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--config" && std::string(argv[i + 1]).ends_with(".json"))
      argv[i] = const_cast<char*>("--model-config");
}

void require(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) throw UsageError(std::string("--") + name + " is required (see --help)");
}

void check_number(const char* option, double value, double low, bool low_excluded, double high) {
  const bool ok =
      std::isfinite(value) && (low_excluded ? value > low : value >= low) && value <= high;
  if (ok) return;
  std::ostringstream rule;
  rule << "--" << option << " " << value << ": must be a finite number "
       << (low_excluded ? ">" : ">=") << " " << low;
  if (high < std::numeric_limits<double>::max()) rule << " and <= " << high;
  throw UsageError(rule.str());
}

}  // namespace tpinfer
