// tpinfer convert: a Hugging Face checkpoint streamed, tensor by tensor, into
// a tpinfer model file.
#include "weights/hf_convert.hpp"

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "base/error.hpp"
#include "base/half.hpp"
#include "weights/sharding.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string file_name(const std::string& path) {
  return fs::path(path).filename().string();
}

// Checkpoint tensors that carry no weights of the model: RoPE tables that
// older transformers versions saved (tpinfer computes them from the config),
// and lm_head.weight of a tied model (transformers ignores it and ties
// lm_head to embed_tokens). Any other unused tensor means the checkpoint has
// a feature the config or tpinfer does not model (o_proj or MLP biases, q/k
// norms), and dropping it would silently change the model.
bool carries_no_weights(const std::string& name, const ModelConfig& c) {
  return ends_with(name, "rotary_emb.inv_freq") || ends_with(name, "rotary_emb.cos_cached") ||
         ends_with(name, "rotary_emb.sin_cached") ||
         (name == "lm_head.weight" && c.tie_word_embeddings);
}

std::string missing_hint(const HfCheckpoint& ck, const std::string& name) {
  if (name == "lm_head.weight")
    return " (config.json says tie_word_embeddings is false; a model whose LM head is its "
           "embedding says true)";
  if (ends_with(name, "_proj.bias"))
    return " (config.json asks for q/k/v biases: attention_bias, which Qwen2 defaults to true)";
  if (name.rfind("model.", 0) == 0 && ck.find(name.substr(6)) != nullptr)
    return " (its names lack the 'model.' prefix: this is a base model without the causal-LM "
           "wrapper; save the *ForCausalLM model)";
  return "";
}

// A weight that is not finite in the stored dtype would poison every logit
// downstream; catch it here, naming the tensor, rather than at load or as NaN
// output. fp16 is where it happens in practice: values past 65504 round to inf.
void check_finite(const std::vector<float>& v, DType stored, const std::string& name,
                  const std::string& file) {
  // Below the largest finite value of the stored dtype nothing can round to inf.
  const float largest = stored == DType::f16    ? 65504.0f
                        : stored == DType::bf16 ? bf16_to_float(0x7F7F)
                                                : std::numeric_limits<float>::max();
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::fabs(v[i]) <= largest) continue;
    if (!std::isfinite(v[i]))
      throw ModelError(file + ": tensor " + name + " holds a non-finite value (" +
                       std::to_string(v[i]) + ") at element " + std::to_string(i) +
                       " (rule: weights are finite; the checkpoint is corrupt)");
    if (!std::isfinite(round_to_dtype(stored, v[i])))
      throw ModelError(file + ": tensor " + name + " has the value " + std::to_string(v[i]) +
                       " at element " + std::to_string(i) + ", beyond the range of " +
                       dtype_name(stored) + " (convert with --dtype " +
                       (stored == DType::f16 ? "bf16 or fp32" : "fp32") + ")");
  }
}

// Removes the partial output unless the conversion completed.
struct PartialFile {
  std::string path;
  bool keep = false;
  ~PartialFile() {
    std::error_code ec;
    if (!keep) fs::remove(path, ec);
  }
};

}  // namespace

ConvertSummary convert_hf_model(
    const ConvertOptions& opts,
    const std::function<void(int64_t, int64_t, const ConvertedTensor&)>& progress) {
  ConvertSummary sum;
  sum.config = read_hf_model_config(opts.hf_dir);
  ModelConfig& c = sum.config;
  if (opts.dtype) c.dtype = *opts.dtype;
  const HfCheckpoint ck = open_hf_checkpoint(opts.hf_dir);
  if (opts.with_tokenizer) sum.tokenizer = read_hf_tokenizer(opts.hf_dir, c);
  // A template renders text for the tokenizer to encode: useless without it.
  if (sum.tokenizer && opts.with_chat_template)
    sum.chat_template = read_hf_chat_template(opts.hf_dir);

  // Check everything but the values before creating the output.
  const std::vector<TensorSpec> specs = expected_tensors(c);
  std::vector<const HfCheckpoint::Ref*> refs;
  std::set<std::string> used;
  for (const TensorSpec& spec : specs) {
    const HfCheckpoint::Ref* ref = ck.find(spec.name);
    if (ref == nullptr)
      throw ModelError(opts.hf_dir + ": tensor " + spec.name + " is missing from the checkpoint (" +
                       ck.source + ")" + missing_hint(ck, spec.name));
    const SafetensorsTensor& t = *ref->tensor;
    const std::string& file = ck.files[ref->file].path();
    if (t.shape != spec.shape)
      throw ModelError(file + ": tensor " + spec.name + " has shape " + shape_str(t.shape) +
                       ", expected " + shape_str(spec.shape) + " from config.json");
    if (!SafetensorsFile::is_float_dtype(t.dtype))
      throw ModelError(file + ": tensor " + spec.name + " has dtype " + t.dtype +
                       ", which cannot be converted to a float weight (F32, F16, BF16, F64)");
    refs.push_back(ref);
    used.insert(spec.name);
  }
  for (const auto& [name, ref] : ck.tensors) {
    if (used.count(name)) continue;
    if (!carries_no_weights(name, c))
      throw ModelError(ck.files[ref.file].path() + ": tensor " + name + " is not a weight of " +
                       c.architecture +
                       " with this config.json (tpinfer has no place for it, and dropping it "
                       "would change the model)");
    sum.ignored.push_back(name);
  }

  PartialFile partial{opts.output + ".partial"};
  WeightWriter writer(partial.path, c);
  std::vector<float> values;  // reused: its capacity ends at the largest tensor
  const auto count = static_cast<int64_t>(specs.size());
  for (int64_t i = 0; i < count; ++i) {
    const TensorSpec& spec = specs[i];
    const SafetensorsFile& file = ck.files[refs[i]->file];
    const SafetensorsTensor& t = *refs[i]->tensor;
    if (progress)
      progress(i, count, {spec.name, spec.shape, t.dtype, c.dtype, file_name(file.path())});
    values.resize(static_cast<size_t>(t.numel()));
    file.read_f32(t, values.data());
    check_finite(values, c.dtype, spec.name, file.path());
    writer.write(spec.name, spec.shape, values.data());
    sum.parameters += t.numel();
  }
  if (sum.tokenizer) writer.write_tokenizer(sum.tokenizer->json);
  if (sum.chat_template.chat) writer.write_chat_template(*sum.chat_template.chat);
  writer.close();
  std::error_code ec;
  fs::rename(partial.path, opts.output, ec);
  if (ec)
    throw Error("cannot rename " + partial.path + " to " + opts.output + ": " + ec.message(),
                kExitOther);
  partial.keep = true;
  sum.tensors = count;
  sum.output_bytes = fs::file_size(opts.output, ec);
  return sum;
}

}  // namespace tpinfer
