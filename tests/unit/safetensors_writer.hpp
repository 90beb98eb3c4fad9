#pragma once
// Test helper: writes safetensors files and Hugging Face model directories the
// way transformers' save_pretrained does (tpinfer itself only reads them).
// Used by tests/unit (test_safetensors, test_convert) and tests/jobs.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/half.hpp"
#include "weights/model_config.hpp"
#include "weights/sharding.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::test {

struct StTensor {
  std::string name;
  std::string dtype;  // F32 | F16 | BF16 | F64, or anything for a bad file
  std::vector<int64_t> shape;
  std::string bytes;  // little-endian data
};

template <typename T>
void st_append(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// fp32 values encoded as `dtype` (16-bit types rounded to nearest even).
inline std::string st_encode(const std::string& dtype, const std::vector<float>& v) {
  std::string out;
  for (float f : v) {
    if (dtype == "F32")
      st_append(out, f);
    else if (dtype == "BF16")
      st_append(out, float_to_bf16(f));
    else if (dtype == "F16")
      st_append(out, float_to_fp16(f));
    else if (dtype == "F64")
      st_append(out, static_cast<double>(f));
    else
      throw std::runtime_error("st_encode: no encoding for " + dtype);
  }
  return out;
}

// What the reader returns for fp32 values stored as `dtype`.
inline float st_round(const std::string& dtype, float f) {
  if (dtype == "BF16") return bf16_to_float(float_to_bf16(f));
  if (dtype == "F16") return fp16_to_float(float_to_fp16(f));
  return f;
}

inline StTensor st_tensor(const std::string& name, const std::string& dtype,
                          const std::vector<int64_t>& shape, const std::vector<float>& values) {
  return {name, dtype, shape, st_encode(dtype, values)};
}

// A file from a header text and raw data: for bad files.
inline std::string st_raw(const std::string& header, const std::string& data) {
  std::string out;
  st_append(out, static_cast<uint64_t>(header.size()));
  return out + header + data;
}

// A well-formed file: tensors packed in order, header padded with spaces to a
// multiple of 8 bytes as the reference writer does.
inline std::string st_image(const std::vector<StTensor>& tensors,
                            const nlohmann::json& metadata = nullptr) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string data;
  for (const StTensor& t : tensors) {
    const uint64_t begin = data.size();
    data += t.bytes;
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {begin, static_cast<uint64_t>(data.size())}}};
  }
  std::string header = h.dump();
  header.resize((header.size() + 7) / 8 * 8, ' ');
  return st_raw(header, data);
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline void write_json(const std::string& path, const nlohmann::json& j) {
  write_bytes(path, j.dump(2));
}

// Every expected tensor of `c` with write_random_model's values for `seed`,
// encoded as `dtype`.
inline std::vector<StTensor> random_model_tensors(const ModelConfig& c, uint64_t seed,
                                                  const std::string& dtype) {
  std::vector<StTensor> out;
  for (const TensorSpec& spec : expected_tensors(c)) {
    const TensorShard all{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0),
                          spec.shape};
    out.push_back(st_tensor(spec.name, dtype, spec.shape, random_tensor_values(c, all, seed)));
  }
  return out;
}

// A Hugging Face model directory: config.json (config_to_json) and `tensors`
// in `shards` files (model.safetensors, or model-0000k-of-0000n.safetensors
// with model.safetensors.index.json).
inline void write_hf_dir(const std::string& dir, const ModelConfig& c,
                         const std::vector<StTensor>& tensors, int shards = 1) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  write_json(dir + "/config.json", config_to_json(c));
  if (shards == 1) {
    write_bytes(dir + "/model.safetensors", st_image(tensors, {{"format", "pt"}}));
    return;
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  uint64_t total = 0;
  const size_t n = tensors.size();
  for (int k = 0; k < shards; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, shards);
    const std::vector<StTensor> part(tensors.begin() + static_cast<long>(n * k / shards),
                                     tensors.begin() + static_cast<long>(n * (k + 1) / shards));
    for (const StTensor& t : part) {
      index["weight_map"][t.name] = name;
      total += t.bytes.size();
    }
    write_bytes(dir + "/" + name, st_image(part, {{"format", "pt"}}));
  }
  index["metadata"]["total_size"] = total;
  write_json(dir + "/model.safetensors.index.json", index);
}

}  // namespace tpinfer::test
