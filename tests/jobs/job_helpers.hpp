#pragma once
// Runs tpinfer the way a user does (mpirun over build/tpinfer) and reads its output.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
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

// A test model's Hugging Face config.json: the shape, and `extra` fields
// (a JSON object's text) merged in (fp32 weights unless it says otherwise).
struct TestModelShape {
  const char* architecture = "LlamaForCausalLM";
  int hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  int max_positions = 0;
  const char* extra = "{}";
};
inline std::string config_json(const TestModelShape& s) {
  nlohmann::json j = {{"architectures", {s.architecture}},
                      {"hidden_size", s.hidden},
                      {"intermediate_size", s.intermediate},
                      {"num_hidden_layers", s.layers},
                      {"num_attention_heads", s.heads},
                      {"num_key_value_heads", s.kv_heads},
                      {"vocab_size", s.vocab},
                      {"max_position_embeddings", s.max_positions},
                      {"torch_dtype", "float32"}};
  j.update(nlohmann::json::parse(s.extra));
  return j.dump();
}

// Writes NAME-config.json (a Hugging Face config) in the test folder and makes
// NAME-model.h5 from it with seeded random weights (and the tokenizer file,
// when given); returns the model's path, or "" after a failure it reports.
inline std::string make_random_model(const std::string& name, const std::string& config_json,
                                     int seed, const std::string& tokenizer = "") {
  std::filesystem::create_directories(TPINFER_TEST_TMP);
  std::ofstream(tmp_path(name + "-config.json")) << config_json;
  const std::string model = tmp_path(name + "-model.h5");
  const CommandResult r = tpinfer_cli("make-model --config " + tmp_path(name + "-config.json") +
                                      " --output " + model + " --seed " + std::to_string(seed) +
                                      (tokenizer.empty() ? "" : " --tokenizer " + tokenizer));
  if (r.exit_code != 0) {
    ADD_FAILURE() << "make-model " << name << ": " << r.output;
    return "";
  }
  return model;
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
