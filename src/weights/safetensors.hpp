#pragma once
// Reader for safetensors files (Hugging Face checkpoints): an 8-byte
// little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the tensors' bytes (offsets count from the first byte after the header).
// The header is checked as strictly as the reference implementation does
// (every tensor inside the data, sizes matching shape x dtype, no overlaps,
// no gaps, no trailing bytes), so a bad or truncated file fails when opened,
// with one ModelError line naming the file, the tensor and the rule. Tensors
// are read one at a time with pread, so memory stays at one tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tpinfer {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as in the header: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range [begin, end) of the data section
  uint64_t end = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Opens `path` and validates its header. Throws ModelError.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const;
  // Every tensor, in data order. The references stay valid while this file lives
  // (also across moves).
  const std::vector<SafetensorsTensor>& tensors() const;
  const SafetensorsTensor* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const;    // "__metadata__"

  // Reads tensor `t` of this file into out[0, t.numel()) as fp32: F32 as is,
  // BF16 and F16 widened exactly, F64 rounded to nearest. Another dtype, or a
  // file that shrank since it was opened, throws ModelError.
  void read_f32(const SafetensorsTensor& t, float* out) const;

  // Whether read_f32 can convert this dtype (F32, F16, BF16, F64).
  static bool is_float_dtype(const std::string& dtype);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpinfer
