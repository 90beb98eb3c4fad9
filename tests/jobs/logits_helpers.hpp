#pragma once
// Reading what `tpinfer logits` writes (a .npy array and its JSON index) and
// comparing logit arrays by relative error, for the logits and fixture tests.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tpinfer::test {

struct Npy {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
  const float* row(int64_t r) const { return data.data() + r * cols; }
};

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A version 1.0 .npy of little-endian float32, 2-D, C order (what tpinfer writes).
inline Npy read_npy(const std::string& path) {
  const std::string b = read_file_bytes(path);
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0 || b[6] != 1)
    throw std::runtime_error(path + ": not a version 1 .npy file");
  const size_t hlen = static_cast<unsigned char>(b[8]) | static_cast<unsigned char>(b[9]) << 8;
  const std::string header = b.substr(10, hlen);
  if (header.find("'descr': '<f4'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": not C-order '<f4': " + header);
  Npy n;
  const size_t s = header.find("'shape': (");
  long long rows = 0, cols = 0;
  if (s == std::string::npos ||
      std::sscanf(header.c_str() + s, "'shape': (%lld, %lld)", &rows, &cols) != 2)
    throw std::runtime_error(path + ": no 2-D shape in " + header);
  n.rows = rows;
  n.cols = cols;
  const size_t bytes = static_cast<size_t>(n.rows * n.cols) * sizeof(float);
  if (b.size() != 10 + hlen + bytes)
    throw std::runtime_error(path + ": size does not match its shape");
  n.data.resize(static_cast<size_t>(n.rows * n.cols));
  std::memcpy(n.data.data(), b.data() + 10 + hlen, bytes);
  return n;
}

inline nlohmann::json read_json_file(const std::string& path) {
  return nlohmann::json::parse(read_file_bytes(path));
}

// max |a - b| / max |b| over `n` values: the relative error of a against reference b.
inline double relative_error(const float* a, const float* b, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    err = std::isnan(d) ? INFINITY : std::max(err, d);
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? err / scale : err;
}

}  // namespace tpinfer::test
