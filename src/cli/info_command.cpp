// tpinfer info: what a model file holds and what each rank would hold at a TP size.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

int info_command(int argc, char** argv) {
  std::string model;
  int tp = 1;
  po::options_description desc("tpinfer info options");
  desc.add_options()("model", po::value(&model), "model file (HDF5)")(
      "tp", po::value(&tp)->default_value(1), "tensor-parallel size to report per-rank bytes for");
  auto vm = parse_options("usage: tpinfer info --model M.h5 [--tp N]", desc, argc, argv);
  if (!vm) return kExitOk;
  require(*vm, "model");
  WeightReader reader(model);
  reader.validate(tp);
  const ModelConfig& c = reader.config();
  int64_t params = 0, file_bytes = 0;
  for (const auto& t : expected_tensors(c)) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    params += n;
    file_bytes += n * dtype_bytes(reader.tensor_dtype(t.name));
  }
  std::printf("model: %s\nconfig: %s\nparameters: %lld (%.3f B)\nweights in file: %lld bytes\n",
              model.c_str(), config_to_json(c).dump().c_str(), static_cast<long long>(params),
              params / 1e9, static_cast<long long>(file_bytes));
  std::printf("tokenizer: %s\n", reader.has_tokenizer() ? "yes" : "no");
  if (const std::optional<StoredChatTemplate> chat = reader.chat_template())
    std::printf("chat template: yes (%zu bytes; bos_token %s, eos_token %s)\n", chat->source.size(),
                chat->bos_token ? nlohmann::json(*chat->bos_token).dump().c_str() : "none",
                chat->eos_token ? nlohmann::json(*chat->eos_token).dump().c_str() : "none");
  else
    std::printf("chat template: no (run with --chat-template FILE to send \"messages\")\n");
  std::printf("at tp %d (bytes per rank, in the file's dtype; KV cache per token in it too):\n",
              tp);
  for (int r = 0; r < tp; ++r) {
    int64_t bytes = 0;
    for (const auto& t : expected_tensors(c))
      bytes += shard_of(c, t, r, tp).numel() * dtype_bytes(reader.tensor_dtype(t.name));
    const ShardLayout s = shard_layout(c, r, tp);
    std::printf(
        "  rank %d: %lld weight bytes, %lld q heads, %lld kv heads, vocab rows [%lld, %lld), "
        "KV cache %lld bytes/token\n",
        r, static_cast<long long>(bytes), static_cast<long long>(s.q_heads),
        static_cast<long long>(s.kv_heads), static_cast<long long>(s.vocab_offset),
        static_cast<long long>(s.vocab_offset + s.vocab_local),
        static_cast<long long>(kv_bytes_per_block(c, s, 1, c.dtype)));
  }
  return kExitOk;
}

}  // namespace tpinfer
