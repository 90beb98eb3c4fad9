// tpinfer convert: a Hugging Face model directory (config.json, safetensors,
// tokenizer files) to a tpinfer model file.
#include <cstdio>
#include <string>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "weights/hf_convert.hpp"

namespace tpinfer {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string ids_str(const std::vector<int64_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

}  // namespace

int convert_command(int argc, char** argv) {
  std::string hf_dir, output, dtype;
  bool no_tokenizer = false, no_chat_template = false, quiet = false;
  po::options_description desc("tpinfer convert options");
  // clang-format off
  desc.add_options()
      ("hf", po::value(&hf_dir),
       "Hugging Face model directory: config.json, model.safetensors or "
       "model.safetensors.index.json with its shards, optional tokenizer.json, "
       "tokenizer_config.json, generation_config.json")
      ("output", po::value(&output), "model file to write (HDF5, format version 1)")
      ("dtype", po::value(&dtype),
       "storage dtype: bf16 | fp16 | fp32 (default: config.json's torch_dtype, else bf16)")
      ("no-tokenizer", po::bool_switch(&no_tokenizer),
       "leave tokenizer.json out (and the chat template with it)")
      ("no-chat-template", po::bool_switch(&no_chat_template),
       "leave the chat template out (tokenizer_config.json's chat_template or "
       "chat_template.jinja)")
      ("quiet", po::bool_switch(&quiet), "no progress line per tensor");
  // clang-format on
  auto vm = parse_options(
      "usage: tpinfer convert --hf DIR --output M.h5 [--dtype bf16|fp16|fp32] [--no-tokenizer] "
      "[--no-chat-template]",
      desc, argc, argv);
  if (!vm) return kExitOk;
  require(*vm, "hf");
  require(*vm, "output");
  ConvertOptions opts;
  opts.hf_dir = hf_dir;
  opts.output = output;
  opts.with_tokenizer = !no_tokenizer;
  opts.with_chat_template = !no_chat_template;
  if (!dtype.empty()) {
    try {
      opts.dtype = dtype_from_name(dtype);
    } catch (const ModelError& e) {
      throw UsageError(std::string("--dtype: ") + e.what());
    }
  }

  const ConvertSummary s =
      convert_hf_model(opts, [&](int64_t i, int64_t n, const ConvertedTensor& t) {
        if (quiet) return;
        std::printf("[%*lld/%lld] %s %s %s -> %s (%s)\n",
                    static_cast<int>(std::to_string(n).size()), static_cast<long long>(i + 1),
                    static_cast<long long>(n), t.name.c_str(), shape_str(t.shape).c_str(),
                    t.source_dtype.c_str(), dtype_name(t.stored_dtype), t.file.c_str());
        std::fflush(stdout);
      });
  const ModelConfig& c = s.config;
  std::printf(
      "wrote %s: %s, %lld layers, hidden %lld, vocab %lld, %lld tensors, %lld parameters, "
      "%s, %.1f MB (%llu bytes)\n",
      output.c_str(), c.architecture.c_str(), static_cast<long long>(c.num_layers),
      static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
      static_cast<long long>(s.tensors), static_cast<long long>(s.parameters), dtype_name(c.dtype),
      static_cast<double>(s.output_bytes) / 1e6, static_cast<unsigned long long>(s.output_bytes));
  if (s.tokenizer)
    std::printf("tokenizer: stored%s; text prompts start with %s\n",
                s.tokenizer->rewritten ? " (post-processor set from tokenizer_config.json)" : "",
                s.tokenizer->bos_id >= 0 ? ("BOS " + std::to_string(s.tokenizer->bos_id)).c_str()
                                         : "no BOS");
  else
    std::printf("tokenizer: none%s; requests need prompt_tokens\n",
                no_tokenizer ? " (--no-tokenizer)" : " (no tokenizer.json)");
  if (s.chat_template.chat)
    std::printf("chat template: stored (%zu bytes, from %s); requests may send \"messages\"\n",
                s.chat_template.chat->source.size(), s.chat_template.from.c_str());
  else if (s.tokenizer)
    std::printf("chat template: none%s\n", no_chat_template ? " (--no-chat-template)" : "");
  if (c.eos_token_ids.empty())
    std::printf(
        "generation stops at max_new_tokens only (no eos_token_id in config.json or "
        "generation_config.json)\n");
  else
    std::printf("generation stops on EOS %s\n", ids_str(c.eos_token_ids).c_str());
  if (!s.ignored.empty())
    std::printf("ignored %zu tensors that hold no weights (%s%s)\n", s.ignored.size(),
                s.ignored.front().c_str(), s.ignored.size() > 1 ? ", ..." : "");
  if (s.tokenizer)
    for (const std::string& w : s.tokenizer->warnings)
      std::fprintf(stderr, "tpinfer: warning: %s\n", w.c_str());
  for (const std::string& w : s.chat_template.warnings)
    std::fprintf(stderr, "tpinfer: warning: %s\n", w.c_str());
  return kExitOk;
}

}  // namespace tpinfer
