#pragma once
// The HDF5 weight file, format version 1 (docs/WEIGHT_FORMAT.md): root
// attributes format="tpinfer", format_version=1, config=<JSON>; one dataset per
// tensor under its Hugging Face name, full shape; float32 stored as IEEE f32,
// bfloat16/float16 stored as uint16 bit patterns; every dataset carries a
// `dtype` attribute. Every rank reads only its own hyperslab. Optional
// checksums (written by WeightWriter): XXH3 hashes of the config, the
// tokenizer and every tile of every tensor, and a content_hash over them.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/random_fill.hpp"
#include "weights/model_config.hpp"
#include "weights/sharding.hpp"

namespace tpinfer {

// A model's chat template (Jinja source) and the special tokens transformers
// hands it as bos_token / eos_token (tokenizer_config.json's; absent: the
// template sees them undefined). Stored as the /chat_template dataset: the
// UTF-8 bytes of {"template": ..., "bos_token": ..., "eos_token": ...}.
struct StoredChatTemplate {
  std::string source;
  std::optional<std::string> bos_token, eos_token;
};

// Writes a model file tensor by tensor (memory stays at one tensor).
class WeightWriter {
 public:
  // Creates (truncates) `path` and writes the root attributes.
  WeightWriter(const std::string& path, const ModelConfig& config);
  ~WeightWriter();
  WeightWriter(const WeightWriter&) = delete;
  WeightWriter& operator=(const WeightWriter&) = delete;
  // Stores fp32 `data` of `shape` as config.dtype (round to nearest even for 16-bit).
  void write(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  // Stores tokenizer.json bytes in the /tokenizer dataset.
  void write_tokenizer(const std::string& tokenizer_json);
  // Stores the chat template in the /chat_template dataset.
  void write_chat_template(const StoredChatTemplate& chat);
  // Sets content_hash (over everything written), flushes and closes; throws
  // on failure (a full disk shows here).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class WeightReader {
 public:
  // Opens `path`, checks format and version, parses the config. Throws ModelError.
  // With verify (the default) and a file that has checksums, every byte this
  // reader returns is checked against them (config here, tokenizer and tensor
  // tiles as read): a mismatch is a ModelError naming the part. verify=false
  // is for measuring load speed only. A file without checksums loads
  // unverified, with one warning line (per file and process; on MPI rank 0 only).
  explicit WeightReader(const std::string& path, bool verify = true);
  ~WeightReader();
  WeightReader(const WeightReader&) = delete;
  WeightReader& operator=(const WeightReader&) = delete;

  const ModelConfig& config() const;
  // Checks every expected tensor is present with the right shape and a known
  // dtype, and that tp_size can shard the config. Throws ModelError naming the
  // tensor (or config field) and the rule. Cheap: reads metadata only.
  void validate(int tp_size) const;
  // Reads one hyperslab as fp32 (converting from the stored dtype). Verifying,
  // it reads the whole tiles the hyperslab touches and checks each one.
  std::vector<float> read(const TensorShard& shard) const;
  // The same into `out` (shard.numel() elements), as float32 or, with `as` the
  // tensor's stored 16-bit dtype, as its stored bits unconverted (what a bf16
  // backend uploads as is). Any other `as` is a ModelError naming both dtypes.
  void read_into(const TensorShard& shard, DType as, void* out) const;
  // The stored dtype of one tensor.
  DType tensor_dtype(const std::string& name) const;
  bool has_tokenizer() const;
  std::string tokenizer_json() const;  // empty when absent
  bool has_chat_template() const;
  // The stored chat template (checked against its checksum like the
  // tokenizer); nullopt when the file has none. A malformed record is a
  // ModelError naming it.
  std::optional<StoredChatTemplate> chat_template() const;
  // Whether the file carries checksums (root attribute content_hash).
  bool has_checksums() const;
  // What a job manifest records of this model: "content-xxh3-128:<hex>", the
  // stored content hash after checking that the stored hashes of the config,
  // tokenizer and tiles add up to it (metadata only: no weight is read); a file
  // without checksums gets file_fingerprint() of its whole bytes (and the
  // warning). Throws ModelError when the hashes do not add up.
  std::string fingerprint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// WeightReader(path).fingerprint().
std::string model_fingerprint(const std::string& path);

// Writes a model with seeded random weights: linear weights and embeddings
// N(0, initializer_range^2), biases N(0, 0.02^2), norm weights 1 + N(0, 0.05^2)
// (so tests notice a norm weight being ignored). Each value is a pure function
// of (seed, tensor name, element index) via Philox, so a GPU can reproduce it.
// With a non-empty tokenizer_json, the file carries it (/tokenizer).
void write_random_model(const ModelConfig& config, const std::string& path, uint64_t seed,
                        const std::string& tokenizer_json = "");
// The same values as write_random_model for one tensor's hyperslab (1-D or 2-D).
std::vector<float> random_tensor_values(const ModelConfig& config, const TensorShard& shard,
                                        uint64_t seed);
// The formula behind those values for one hyperslab, for a backend to evaluate.
RandomFill random_fill_of(const ModelConfig& config, const TensorShard& shard, uint64_t seed);

}  // namespace tpinfer
