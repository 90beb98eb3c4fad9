#pragma once
// A Hugging Face model directory -> a tpinfer model file (format version 1,
// docs/WEIGHT_FORMAT.md "Converting a Hugging Face model"). The directory
// holds config.json, model.safetensors or the shards named by
// model.safetensors.index.json, and optionally tokenizer.json,
// tokenizer_config.json and generation_config.json. Tensor names and layouts
// are Hugging Face's in both formats, so converting renames nothing: it checks
// every tensor against the config, converts its dtype, and streams it.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "weights/model_config.hpp"
#include "weights/safetensors.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

// The checkpoint's tensors: model.safetensors when present (as transformers
// prefers it), else every shard model.safetensors.index.json names.
struct HfCheckpoint {
  struct Ref {
    size_t file = 0;                            // index into files
    const SafetensorsTensor* tensor = nullptr;  // owned by files[file]
  };
  std::string dir;
  std::string source;  // "model.safetensors" or "model.safetensors.index.json"
  std::vector<SafetensorsFile> files;
  std::vector<std::pair<std::string, Ref>> tensors;  // sorted by name

  const Ref* find(const std::string& name) const;  // nullptr when absent
};
// Opens and validates every file of the checkpoint in `dir`. Throws ModelError
// naming the file and the rule (no checkpoint, a shard the index names is
// missing, a tensor the index maps to a file that lacks it, a tensor in two shards).
HfCheckpoint open_hf_checkpoint(const std::string& dir);

// config.json, with generation_config.json's eos_token_id (an id or a list)
// and bos_token_id when it has them: the ids transformers' generate() stops on.
ModelConfig read_hf_model_config(const std::string& dir);

// The tokenizer a converted model stores, or nullopt without tokenizer.json.
struct HfTokenizer {
  std::string json;                   // tokenizer.json, post-processor adjusted (see below)
  bool rewritten = false;             // true when tokenizer_config.json changed the post-processor
  int32_t bos_id = -1;                // the token a text prompt starts with, -1 for none
  std::vector<std::string> warnings;  // what will differ from transformers
};
// Reads tokenizer.json and applies tokenizer_config.json the way transformers
// does: when it sets add_bos_token or add_eos_token, the post-processor is
// replaced by the TemplateProcessing that transformers' update_post_processor()
// builds (bos_token first iff add_bos_token, eos_token last iff add_eos_token),
// which is also what transformers' save_pretrained() writes (null when it adds
// no token). Otherwise the bytes are kept exactly. Throws ModelError when the tokenizer cannot be
// loaded or has more tokens than `config.vocab_size`.
std::optional<HfTokenizer> read_hf_tokenizer(const std::string& dir, const ModelConfig& config);

// The chat template apply_chat_template would use: chat_template.jinja in the
// directory when present (newer transformers save it there, and it wins over
// tokenizer_config.json's), else tokenizer_config.json's "chat_template" (a
// string, or a list of {"name", "template"} of which "default" is taken, as
// transformers takes it when no name is given), with bos_token / eos_token
// from tokenizer_config.json (else special_tokens_map.json). No template when
// there is none, or only named ones without "default" (a warning lists them).
// The template is parsed: one the renderer cannot run is a ModelError naming
// the construct and its position.
struct HfChatTemplate {
  std::optional<StoredChatTemplate> chat;
  std::string from;  // the file it came from
  std::vector<std::string> warnings;
};
HfChatTemplate read_hf_chat_template(const std::string& dir);

struct ConvertOptions {
  std::string hf_dir;
  std::string output;
  std::optional<DType> dtype;  // default: config.json's torch_dtype
  bool with_tokenizer = true;
  bool with_chat_template = true;  // stored only with the tokenizer
};

struct ConvertedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::string source_dtype;  // "BF16", ...
  DType stored_dtype = DType::bf16;
  std::string file;  // the safetensors file it came from (file name only)
};

struct ConvertSummary {
  ModelConfig config;
  int64_t tensors = 0;
  int64_t parameters = 0;
  uint64_t output_bytes = 0;
  std::optional<HfTokenizer> tokenizer;
  HfChatTemplate chat_template;
  std::vector<std::string> ignored;  // checkpoint tensors the model does not use
};

// Converts opts.hf_dir into opts.output. Everything but the values is checked
// before the output is created; values are checked as each tensor is converted
// (finite, and finite once rounded to the stored dtype). The file is written to "<output>.partial"
// and renamed when complete, so a failure never leaves a file that looks whole. Memory stays near
// one fp32 copy of the largest tensor. `progress` is called before each tensor is converted. Throws
// ModelError (exit code 2) for a bad or unsupported model, naming the file, the tensor and the
// rule.
ConvertSummary convert_hf_model(
    const ConvertOptions& opts,
    const std::function<void(int64_t index, int64_t count, const ConvertedTensor&)>& progress = {});

}  // namespace tpinfer
