// tpinfer tokenize: text lines on stdin to JSON id lists on stdout (or back
// with --decode), with a model file's tokenizer or a tokenizer.json: for
// debugging prompts and comparing with other tokenizers.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "text/tokenizer.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

int tokenize_command(int argc, char** argv) {
  std::string model, tokenizer_path;
  bool decode = false, bos = false, skip_special = false;
  po::options_description desc("tpinfer tokenize options");
  desc.add_options()("model", po::value(&model), "model file whose tokenizer to use")(
      "tokenizer", po::value(&tokenizer_path), "or a Hugging Face tokenizer.json")(
      "decode", po::bool_switch(&decode), "JSON id lists in, text lines out")(
      "bos", po::bool_switch(&bos), "encode: add the BOS token as a prompt gets it")(
      "skip-special", po::bool_switch(&skip_special), "decode: leave special tokens out");
  auto vm = parse_options(
      "usage: tpinfer tokenize (--model M.h5 | --tokenizer tokenizer.json) [--decode] < lines",
      desc, argc, argv);
  if (!vm) return kExitOk;
  if (model.empty() == tokenizer_path.empty())
    throw UsageError("give exactly one of --model and --tokenizer");
  Tokenizer tok = [&] {
    if (!tokenizer_path.empty()) return Tokenizer::from_file(tokenizer_path);
    WeightReader reader(model);
    if (!reader.has_tokenizer()) throw ModelError(model + " has no tokenizer");
    return Tokenizer::from_json(reader.tokenizer_json());
  }();
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!decode) {
      std::cout << nlohmann::json(tok.encode(line, bos)).dump() << "\n";
      continue;
    }
    std::vector<int32_t> ids;
    try {
      ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
    } catch (const nlohmann::json::exception&) {
      throw InputError("stdin line " + std::to_string(n) + " is not a JSON list of token ids");
    }
    // JSON-quoted, so a decoded newline cannot split the output line.
    std::cout << nlohmann::json(tok.decode(ids, skip_special)).dump() << "\n";
  }
  return kExitOk;
}

}  // namespace tpinfer
