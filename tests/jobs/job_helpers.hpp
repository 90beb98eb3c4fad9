#pragma once
// Runs tpinfer the way a user does (mpirun over build/tpinfer) and reads its output.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace tpinfer::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_shell(const std::string& command) {
  CommandResult r;
  // Braces: stderr of every command in a list is captured, not only the last's.
  FILE* pipe = popen(("{ " + command + "\n} 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Per test process, so tests run in parallel (ctest -j) never share a file.
inline std::string tmp_path(const std::string& name) {
  return std::string(TPINFER_TEST_TMP) + "/" + std::to_string(getpid()) + "-" + name;
}

inline CommandResult tpinfer_cli(const std::string& args) {
  return run_shell(std::string(TPINFER_BIN) + " " + args);
}

inline CommandResult mpirun_tpinfer(int np, const std::string& args) {
  return run_shell(std::string(TPINFER_MPIRUN) + " -np " + std::to_string(np) + " " + TPINFER_BIN +
                   " " + args);
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Results keyed by id (dumped), failing on a repeated id.
inline std::map<std::string, nlohmann::json> results_by_id(const std::string& path) {
  std::map<std::string, nlohmann::json> out;
  for (auto& j : read_jsonl(path)) {
    const std::string key = j.contains("id") ? j["id"].dump() : "line:" + j["line"].dump();
    if (!out.emplace(key, j).second) throw std::runtime_error("id " + key + " written twice");
  }
  return out;
}

}  // namespace tpinfer::test
