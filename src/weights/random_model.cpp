// Seeded random models for tests and benchmarks. Every element is a pure
// function of (seed, tensor name, flat index in the full tensor), so any rank,
// any TP size and a GPU kernel can regenerate exactly the values in the file
// (the formula is random_fill.hpp's):
//   key    = fnv1a64(name bytes, then the 8 little-endian bytes of seed)
//   z      = philox_normal2(key, 0, index / 2)[index % 2]
//   value  = mean + stddev * z, rounded to the config's storage dtype
// Returning the rounded value makes a file read back equal random_tensor_values.
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/fp8.hpp"
#include "base/philox.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t tensor_key(const std::string& name, uint64_t seed) {
  unsigned char seed_bytes[8];
  for (int i = 0; i < 8; ++i) seed_bytes[i] = static_cast<unsigned char>(seed >> (8 * i));
  return fnv1a64(seed_bytes, sizeof seed_bytes, fnv1a64(name.data(), name.size()));
}

struct Distribution {
  float mean;
  float stddev;
};

Distribution distribution_of(const ModelConfig& c, const std::string& name) {
  // Norm weights near 1 but not exactly 1, so a test notices one being ignored.
  if (ends_with(name, "norm.weight")) return {1.0f, 0.05f};
  if (ends_with(name, "_proj.bias")) return {0.0f, 0.02f};
  return {0.0f, static_cast<float>(c.initializer_range)};
}

void check_shard(const TensorShard& s) {
  const size_t rank = s.full_shape.size();
  if (s.offset.size() != rank || s.count.size() != rank)
    throw ModelError("tensor " + s.name + ": shard offset/count rank does not match its shape");
  for (size_t d = 0; d < rank; ++d) {
    if (s.offset[d] < 0 || s.count[d] < 0 || s.offset[d] + s.count[d] > s.full_shape[d])
      throw ModelError("tensor " + s.name + ": shard [offset " + std::to_string(s.offset[d]) +
                       ", count " + std::to_string(s.count[d]) + "] of dim " + std::to_string(d) +
                       " is outside its size " + std::to_string(s.full_shape[d]));
  }
}

}  // namespace

RandomFill random_fill_of(const ModelConfig& config, const TensorShard& shard, uint64_t seed) {
  check_shard(shard);
  if (shard.full_shape.empty() || shard.full_shape.size() > 2)
    throw ModelError("tensor " + shard.name +
                     ": random weights are defined for 1-D and 2-D tensors");
  const Distribution dist = distribution_of(config, shard.name);
  RandomFill f;
  f.key = tensor_key(shard.name, seed);
  f.mean = dist.mean;
  f.stddev = dist.stddev;
  f.round_to = config.dtype;
  f.row0 = shard.offset[0];
  f.col0 = shard.full_shape.size() == 2 ? shard.offset[1] : 0;
  f.full_cols = shard.full_shape.size() == 2 ? shard.full_shape[1] : 1;
  return f;
}

std::vector<float> random_tensor_values(const ModelConfig& config, const TensorShard& shard,
                                        uint64_t seed) {
  const RandomFill f = random_fill_of(config, shard, seed);
  return random_fill_block(f, shard.count[0], shard.count.size() == 2 ? shard.count[1] : 1);
}

void write_random_model(const ModelConfig& config, const std::string& path, uint64_t seed,
                        const std::string& tokenizer_json) {
  WeightWriter writer(path, config);
  if (!tokenizer_json.empty()) writer.write_tokenizer(tokenizer_json);
  for (const TensorSpec& spec : expected_tensors(config)) {
    const TensorShard full{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0),
                           spec.shape};
    const std::vector<float> values = random_tensor_values(config, full, seed);
    writer.write(spec.name, spec.shape, values.data());
  }
  writer.close();
}

}  // namespace tpinfer
