// tpinfer make-model: a model file with seeded random weights, for tests and
// the demo until a trained model ships.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "text/tokenizer.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

int make_model_command(int argc, char** argv) {
  std::string config_path, output, dtype, tokenizer_path;
  uint64_t seed = 0;
  po::options_description desc("tpinfer make-model options");
  desc.add_options()("model-config", po::value(&config_path), "Hugging Face-style config.json")(
      "output", po::value(&output), "model file to write (HDF5)")(
      "seed", po::value(&seed)->default_value(0), "weights are a pure function of this seed")(
      "dtype", po::value(&dtype),
      "storage dtype: float32 | bfloat16 | float16 "
      "(default: the config's torch_dtype, else bfloat16)")(
      "tokenizer", po::value(&tokenizer_path),
      "a Hugging Face tokenizer.json to store in the file (text prompts and text results)");
  accept_config_json_as_model_config(argc, argv);
  auto vm = parse_options(
      "usage: tpinfer make-model --config CONFIG.json --output M.h5 [--seed N] [--dtype D]", desc,
      argc, argv);
  if (!vm) return kExitOk;
  require(*vm, "model-config");
  require(*vm, "output");
  ModelConfig c = read_hf_config_file(config_path);
  if (!dtype.empty()) c.dtype = dtype_from_name(dtype);
  std::string tokenizer_json;
  if (!tokenizer_path.empty()) {
    const Tokenizer tok = Tokenizer::from_file(tokenizer_path);  // refuse one we cannot run
    if (static_cast<int64_t>(tok.vocab_size()) > c.vocab_size)
      throw ModelError(tokenizer_path + " has " + std::to_string(tok.vocab_size()) +
                       " tokens, more than the config's vocab_size " +
                       std::to_string(c.vocab_size));
    std::ifstream in(tokenizer_path, std::ios::binary);
    tokenizer_json.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  write_random_model(c, output, seed, tokenizer_json);
  std::printf("wrote %s: %s, %lld layers, hidden %lld, vocab %lld, %s, seed %llu\n", output.c_str(),
              c.architecture.c_str(), static_cast<long long>(c.num_layers),
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
              dtype_name(c.dtype), static_cast<unsigned long long>(seed));
  return kExitOk;
}

}  // namespace tpinfer
