// The safetensors reader: header validation and tensor-by-tensor reads.
#include "weights/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "base/error.hpp"
#include "base/half.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as is");

namespace {

// The reference implementation refuses larger headers; so do we, before
// allocating a buffer of whatever size a corrupt file claims.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Tensors are read and widened through a buffer of this size, so reading a
// tensor costs one fp32 tensor of memory, not two.
constexpr size_t kBlockBytes = size_t{16} << 20;

// Element sizes of every dtype the format defines, so that a header with
// integer or fp8 tensors is still validated; only the float ones convert.
int dtype_size(const std::string& d) {
  static const std::unordered_map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string range_str(uint64_t b, uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
}

// nlohmann's messages can quote raw header bytes; keep the line one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s.size() > 300 ? s.substr(0, 300) + "..." : s;
}

uint64_t read_le_u64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void widen_f16(const uint16_t* src, float* dst, size_t n) {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < t.size(); ++h) t[h] = fp16_to_float(static_cast<uint16_t>(h));
    return t;
  }();
  for (size_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

void widen_bf16(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, sizeof bits);
  }
}

void narrow_f64(const double* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct SafetensorsFile::Impl {
  std::string path;
  int fd = -1;
  uint64_t data_start = 0;  // 8 + header length
  uint64_t data_size = 0;
  std::vector<SafetensorsTensor> tensors;
  std::unordered_map<std::string, size_t> by_name;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  [[noreturn]] void fail(const std::string& what) const { throw ModelError(path + ": " + what); }

  // Reads exactly n bytes at `offset` or fails naming `what`.
  void read_at(uint64_t offset, void* buf, size_t n, const std::string& what) const {
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
      const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("cannot read " + what + ": " + std::strerror(errno));
      if (got == 0)
        fail("unexpected end of file reading " + what +
             " (the file is truncated or changed since it was opened)");
      p += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<size_t>(got);
    }
  }

  // Reads `numel` elements of type Stored at file offset `at` a block at a
  // time, converting each block into `out` as it arrives.
  template <typename Stored, typename Convert>
  void read_widened(uint64_t at, size_t numel, const std::string& what, float* out,
                    Convert convert) const {
    const size_t per_block = kBlockBytes / sizeof(Stored);
    std::vector<Stored> buf(std::min(per_block, numel));
    for (size_t i = 0; i < numel; i += per_block) {
      const size_t n = std::min(per_block, numel - i);
      read_at(at + i * sizeof(Stored), buf.data(), n * sizeof(Stored), what);
      convert(buf.data(), out + i, n);
    }
  }

  void parse_header(const std::string& text);
  SafetensorsTensor parse_tensor(const std::string& name, const nlohmann::json& v) const;
  void check_layout();
};

SafetensorsTensor SafetensorsFile::Impl::parse_tensor(const std::string& name,
                                                      const nlohmann::json& v) const {
  const std::string what = "tensor " + name;
  if (!v.is_object()) fail(what + ": header entry is not an object, got " + one_line(v.dump()));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) fail(what + ": header entry has no '" + key + "'");
  SafetensorsTensor t;
  t.name = name;
  if (!v["dtype"].is_string()) fail(what + ": dtype is not a string");
  t.dtype = v["dtype"].get<std::string>();
  const int esize = dtype_size(t.dtype);
  if (esize == 0)
    fail(what + " has unknown dtype '" + t.dtype +
         "' (safetensors dtypes: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, "
         "F32, I64, U64, F64)");

  const nlohmann::json& shape = v["shape"];
  if (!shape.is_array()) fail(what + ": shape must be a list of non-negative integers");
  uint64_t numel = 1;
  for (const auto& d : shape) {
    if (!d.is_number_unsigned())
      fail(what + ": shape must be a list of non-negative integers, got " + one_line(shape.dump()));
    const uint64_t dim = d.get<uint64_t>();
    // Keep numel * element size within int64 so later arithmetic cannot wrap.
    if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX) / 8)
      fail(what + ": shape " + one_line(shape.dump()) + " is too large");
    t.shape.push_back(static_cast<int64_t>(dim));
  }

  const nlohmann::json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    fail(what + ": data_offsets must be [begin, end] with non-negative integers, got " +
         one_line(off.dump()));
  t.begin = off[0].get<uint64_t>();
  t.end = off[1].get<uint64_t>();
  if (t.begin > t.end)
    fail(what + ": data_offsets " + range_str(t.begin, t.end) + " end before they begin");
  const uint64_t need = numel * static_cast<uint64_t>(esize);
  if (t.end - t.begin != need)
    fail(what + ": data_offsets " + range_str(t.begin, t.end) + " hold " +
         std::to_string(t.end - t.begin) + " bytes, but shape " + shape_str(t.shape) + " of " +
         t.dtype + " needs " + std::to_string(need));
  if (t.end > data_size)
    fail(what + ": data_offsets " + range_str(t.begin, t.end) +
         " run past the end of the data section (" + std::to_string(data_size) +
         " bytes): the file is truncated");
  return t;
}

void SafetensorsFile::Impl::parse_header(const std::string& text) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("header is not valid JSON: " + one_line(e.what()));
  }
  if (!header.is_object()) fail("header is not a JSON object");
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object (rule: it maps strings to strings)");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string())
          fail("__metadata__ entry '" + k + "' is not a string (rule: it maps strings to strings)");
        metadata[k] = s.get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_tensor(name, v));
  }
}

void SafetensorsFile::Impl::check_layout() {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor& t : tensors) {
    if (t.begin < pos)
      fail("tensors " + prev->name + " and " + t.name + " overlap (data_offsets " +
           range_str(prev->begin, prev->end) + " and " + range_str(t.begin, t.end) + ")");
    if (t.begin > pos)
      fail("bytes [" + std::to_string(pos) + ", " + std::to_string(t.begin) +
           ") of the data section belong to no tensor (rule: tensors cover the data without gaps)");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    fail("the data section has " + std::to_string(data_size) + " bytes but the tensors end at " +
         std::to_string(pos) + " (rule: no trailing bytes)");
  for (size_t i = 0; i < tensors.size(); ++i) by_name.emplace(tensors[i].name, i);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m.fd < 0)
    throw ModelError("cannot open safetensors file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) m.fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) m.fail("not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    m.fail("truncated: " + std::to_string(file_size) +
           " bytes, fewer than the 8-byte header length a safetensors file starts with");
  unsigned char len_bytes[8];
  m.read_at(0, len_bytes, sizeof len_bytes, "the header length");
  const uint64_t header_len = read_le_u64(len_bytes);
  if (header_len > kMaxHeaderBytes)
    m.fail("header length " + std::to_string(header_len) + " exceeds the format's limit of " +
           std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
  if (header_len > file_size - 8)
    m.fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
           std::to_string(file_size) + " bytes): truncated or not a safetensors file");
  std::string text(header_len, '\0');
  m.read_at(8, text.data(), text.size(), "the header");
  m.data_start = 8 + header_len;
  m.data_size = file_size - m.data_start;
  m.parse_header(text);
  m.check_layout();
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const std::string& SafetensorsFile::path() const {
  return impl_->path;
}

const std::vector<SafetensorsTensor>& SafetensorsFile::tensors() const {
  return impl_->tensors;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = impl_->by_name.find(name);
  return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const {
  return impl_->metadata;
}

bool SafetensorsFile::is_float_dtype(const std::string& d) {
  return d == "F32" || d == "F16" || d == "BF16" || d == "F64";
}

void SafetensorsFile::read_f32(const SafetensorsTensor& t, float* out) const {
  const Impl& m = *impl_;
  const SafetensorsTensor* own = find(t.name);
  if (own == nullptr || own->begin != t.begin || own->end != t.end)
    m.fail("tensor " + t.name + " is not in this file");
  if (!is_float_dtype(t.dtype))
    m.fail("tensor " + t.name + " has dtype " + t.dtype +
           ", which cannot be converted to a float weight (F32, F16, BF16, F64)");
  const std::string what = "tensor " + t.name;
  if (t.dtype == "F32") {  // straight into the destination, no staging copy
    m.read_at(m.data_start + t.begin, out, t.end - t.begin, what);
    return;
  }
  const uint64_t at = m.data_start + t.begin;
  const auto numel = static_cast<size_t>(t.numel());
  if (t.dtype == "BF16")
    m.read_widened<uint16_t>(at, numel, what, out, widen_bf16);
  else if (t.dtype == "F16")
    m.read_widened<uint16_t>(at, numel, what, out, widen_f16);
  else
    m.read_widened<double>(at, numel, what, out, narrow_f64);
}

}  // namespace tpinfer
