// The HDF5 weight store, format version 1 (docs/WEIGHT_FORMAT.md).
#include "tpinfer/weight_store.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tpinfer/error.hpp"

namespace tpinfer {

namespace {

constexpr const char* kFormatName = "tpinfer";
constexpr long long kFormatVersion = 1;
constexpr const char* kTokenizerDataset = "tokenizer";
// Reads and writes go through a buffer of at most this many bytes: large
// enough that each piece is one big sequential I/O, small enough that loading
// a tensor costs little memory beyond the tensor itself.
constexpr size_t kBlockBytes = size_t{16} << 20;

// An error whose message is already the complete line for the user; h5_guard
// passes it through instead of wrapping it as an HDF5 failure.
struct StoreError : ModelError {
  explicit StoreError(const std::string& w) : ModelError(w) {}
};

// ---- HDF5 failure causes ----------------------------------------------------
// HDF5 prints its whole error stack to stderr by default. We replace that with
// a handler that prints nothing and keeps the innermost cause ("No space left
// on device", "truncated file: ..."), so the user sees one line with the cause.
thread_local bool t_h5_failed = false;
thread_local std::string t_h5_cause;

herr_t keep_innermost(unsigned n, const H5E_error2_t* err, void* data) {
  if (n == 0 && err != nullptr && err->desc != nullptr)
    *static_cast<std::string*>(data) = err->desc;
  return 0;
}

std::string summarize_cause(const std::string& desc) {
  // The file drivers embed strerror() in a long description of the syscall.
  const std::string marker = "error message = '";
  const size_t at = desc.find(marker);
  if (at != std::string::npos) {
    const size_t begin = at + marker.size();
    const size_t end = desc.find('\'', begin);
    if (end != std::string::npos) return desc.substr(begin, end - begin);
  }
  return desc.size() > 300 ? desc.substr(0, 300) + "..." : desc;
}

herr_t capture_h5_error(hid_t stack, void*) {
  // Keep the first failure: handles closed while unwinding may fail as well.
  if (t_h5_failed) return 0;
  t_h5_failed = true;
  std::string desc;
  H5Ewalk2(stack, H5E_WALK_UPWARD, keep_innermost, &desc);
  t_h5_cause = summarize_cause(desc);
  return 0;
}

void install_h5_error_handler() {
  TPINFER_H5_CHECK(H5Eset_auto2(H5E_DEFAULT, capture_h5_error, nullptr));
}

// Runs `body`; an HDF5 failure inside becomes one ModelError line:
// "<context>: <cause> (<call and source location>)".
template <typename F>
auto h5_guard(const std::string& context, F&& body) -> decltype(body()) {
  t_h5_failed = false;
  t_h5_cause.clear();
  try {
    return body();
  } catch (const StoreError&) {
    throw;
  } catch (const ModelError& e) {
    const std::string cause = t_h5_failed && !t_h5_cause.empty() ? t_h5_cause : "HDF5 error";
    throw ModelError(context + ": " + cause + " (" + e.what() + ")");
  }
}

// ---- RAII for hid_t ---------------------------------------------------------
class H5Obj {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Obj() = default;
  H5Obj(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  H5Obj(H5Obj&& o) noexcept : id_(std::exchange(o.id_, kInvalid)), closer_(o.closer_) {}
  H5Obj& operator=(H5Obj&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, kInvalid);
      closer_ = o.closer_;
    }
    return *this;
  }
  H5Obj(const H5Obj&) = delete;
  H5Obj& operator=(const H5Obj&) = delete;
  ~H5Obj() { reset(); }

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  // Closing can be where buffered writes fail, so this one reports failure.
  void close() {
    const hid_t id = std::exchange(id_, kInvalid);
    if (id >= 0) TPINFER_H5_CHECK(closer_(id));
  }

 private:
  static constexpr hid_t kInvalid = -1;
  void reset() noexcept {
    if (id_ >= 0) closer_(id_);  // a destructor cannot report; close() does
    id_ = kInvalid;
  }
  hid_t id_ = kInvalid;
  Closer closer_ = nullptr;
};

H5Obj simple_space(const std::vector<hsize_t>& dims) {
  if (dims.empty()) return {TPINFER_H5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose};
  return {TPINFER_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)),
          H5Sclose};
}

// ---- attributes ---------------------------------------------------------------
void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  // Fixed-length, NUL-terminated UTF-8: readable by every HDF5 tool and h5py.
  H5Obj type(TPINFER_H5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
  TPINFER_H5_CHECK(H5Tset_size(type.get(), value.size() + 1));
  TPINFER_H5_CHECK(H5Tset_strpad(type.get(), H5T_STR_NULLTERM));
  TPINFER_H5_CHECK(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  H5Obj space = simple_space({});
  H5Obj attr(
      TPINFER_H5_CHECK(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)),
      H5Aclose);
  TPINFER_H5_CHECK(H5Awrite(attr.get(), type.get(), value.c_str()));
  attr.close();
}

void write_int_attr(hid_t obj, const char* name, long long value) {
  H5Obj space = simple_space({});
  H5Obj attr(
      TPINFER_H5_CHECK(H5Acreate2(obj, name, H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)),
      H5Aclose);
  TPINFER_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_LLONG, &value));
  attr.close();
}

// Opens attribute `name` of `obj` holding exactly one value; nullopt when absent.
// `what` names the owner in errors ("m.h5: tensor x").
std::optional<H5Obj> open_single_attr(hid_t obj, const char* name, const std::string& what) {
  if (TPINFER_H5_CHECK(H5Aexists(obj, name)) == 0) return std::nullopt;
  H5Obj attr(TPINFER_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
  H5Obj space(TPINFER_H5_CHECK(H5Aget_space(attr.get())), H5Sclose);
  if (TPINFER_H5_CHECK(H5Sget_simple_extent_npoints(space.get())) != 1)
    throw StoreError(what + ": attribute '" + name + "' must hold exactly one value");
  return attr;
}

std::optional<std::string> read_string_attr(hid_t obj, const char* name, const std::string& what) {
  std::optional<H5Obj> attr = open_single_attr(obj, name, what);
  if (!attr) return std::nullopt;
  H5Obj type(TPINFER_H5_CHECK(H5Aget_type(attr->get())), H5Tclose);
  if (TPINFER_H5_CHECK(H5Tget_class(type.get())) != H5T_STRING)
    throw StoreError(what + ": attribute '" + name + "' is not a string");
  if (TPINFER_H5_CHECK(H5Tis_variable_str(type.get())) > 0) {
    // Variable-length strings are what h5py writes for a Python str.
    H5Obj mem(TPINFER_H5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
    TPINFER_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE));
    TPINFER_H5_CHECK(H5Tset_cset(mem.get(), TPINFER_H5_CHECK(H5Tget_cset(type.get()))));
    char* raw = nullptr;
    TPINFER_H5_CHECK(H5Aread(attr->get(), mem.get(), &raw));
    std::unique_ptr<char, herr_t (*)(void*)> owned(raw, H5free_memory);
    return std::string(raw != nullptr ? raw : "");
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0) throw_hdf5_error("H5Tget_size(type.get())", __FILE__, __LINE__);
  std::string value(size, '\0');
  TPINFER_H5_CHECK(H5Aread(attr->get(), type.get(), value.data()));
  value.resize(strnlen(value.data(), size));
  return value;
}

std::optional<long long> read_int_attr(hid_t obj, const char* name, const std::string& what) {
  std::optional<H5Obj> attr = open_single_attr(obj, name, what);
  if (!attr) return std::nullopt;
  H5Obj type(TPINFER_H5_CHECK(H5Aget_type(attr->get())), H5Tclose);
  if (TPINFER_H5_CHECK(H5Tget_class(type.get())) != H5T_INTEGER)
    throw StoreError(what + ": attribute '" + name + "' is not an integer");
  long long value = 0;
  TPINFER_H5_CHECK(H5Aread(attr->get(), H5T_NATIVE_LLONG, &value));
  return value;
}

// ---- helpers ------------------------------------------------------------------
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::optional<DType> dtype_from_attr(const std::string& s) {
  // Exactly the three names the format defines; torch aliases are not accepted
  // in files so that every reader agrees on what a file means.
  if (s == "float32") return DType::f32;
  if (s == "bfloat16") return DType::bf16;
  if (s == "float16") return DType::f16;
  return std::nullopt;
}

std::string describe_type(hid_t type) {
  const H5T_class_t cls = TPINFER_H5_CHECK(H5Tget_class(type));
  const size_t bits = H5Tget_size(type) * 8;
  switch (cls) {
    case H5T_FLOAT:
      return std::to_string(bits) + "-bit float";
    case H5T_INTEGER:
      return std::to_string(bits) + "-bit " +
             (TPINFER_H5_CHECK(H5Tget_sign(type)) == H5T_SGN_NONE ? "unsigned" : "signed") +
             " integer";
    case H5T_STRING:
      return "a string";
    default:
      return "a non-numeric HDF5 type";
  }
}

bool storage_matches(hid_t type, DType d) {
  if (d == DType::f32)
    return TPINFER_H5_CHECK(H5Tequal(type, H5T_IEEE_F32LE)) > 0 ||
           TPINFER_H5_CHECK(H5Tequal(type, H5T_IEEE_F32BE)) > 0;
  return TPINFER_H5_CHECK(H5Tequal(type, H5T_STD_U16LE)) > 0 ||
         TPINFER_H5_CHECK(H5Tequal(type, H5T_STD_U16BE)) > 0;
}

void check_root_name(const std::string& path, const std::string& name) {
  // A '/' would make HDF5 create or look into groups, "." is the root itself.
  if (name.empty() || name == "." || name.find('/') != std::string::npos)
    throw StoreError(path + ": tensor name '" + name +
                     "' is not a valid dataset name (rule: non-empty, no '/')");
}

void select_slab(hid_t space, const std::vector<hsize_t>& start,
                 const std::vector<hsize_t>& count) {
  if (start.empty()) return;  // scalar: the whole (one-element) space
  TPINFER_H5_CHECK(
      H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
}

void write_slab(hid_t ds, hid_t mem_type, const std::vector<hsize_t>& start,
                const std::vector<hsize_t>& count, const void* buf) {
  H5Obj fspace(TPINFER_H5_CHECK(H5Dget_space(ds)), H5Sclose);
  select_slab(fspace.get(), start, count);
  H5Obj mspace = simple_space(count);
  TPINFER_H5_CHECK(H5Dwrite(ds, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf));
}

void read_slab(hid_t ds, hid_t mem_type, const std::vector<hsize_t>& start,
               const std::vector<hsize_t>& count, void* buf) {
  H5Obj fspace(TPINFER_H5_CHECK(H5Dget_space(ds)), H5Sclose);
  select_slab(fspace.get(), start, count);
  H5Obj mspace = simple_space(count);
  TPINFER_H5_CHECK(H5Dread(ds, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf));
}

// Widening runs over every loaded weight, so it must not cost a call per
// element: bf16 is the top half of an fp32 (a shift the compiler vectorises),
// fp16 goes through a 65536-entry table built once from fp16_to_float.
void widen(DType d, const uint16_t* src, float* dst, size_t n) {
  if (d == DType::bf16) {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
      std::memcpy(dst + i, &bits, sizeof bits);
    }
    return;
  }
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < t.size(); ++h) t[h] = fp16_to_float(static_cast<uint16_t>(h));
    return t;
  }();
  for (size_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

void widen(DType, const float* src, float* dst, size_t n) {
  std::copy(src, src + n, dst);
}

// Reads rows [row0, row0 + rows) x columns [col0, col0 + cols) of a 2-D
// dataset with `width` columns. The file is read as whole rows, a block at a
// time, so every read is one large contiguous I/O; a column slice (row-parallel
// tensors) is then picked in memory. This beats HDF5's own strided hyperslab
// read of a contiguous dataset, which goes through its small sieve buffer
// (see docs/WEIGHT_FORMAT.md for the measurements).
template <typename Stored>
void read_rows(hid_t ds, hid_t mem_type, DType dtype, int64_t row0, int64_t rows, int64_t width,
               int64_t col0, int64_t cols, float* out) {
  const int64_t per_block =
      std::max<int64_t>(1, static_cast<int64_t>(kBlockBytes / sizeof(Stored)) / width);
  std::vector<Stored> buf(static_cast<size_t>(std::min(rows, per_block) * width));
  for (int64_t b = 0; b < rows; b += per_block) {
    const int64_t n = std::min(per_block, rows - b);
    read_slab(ds, mem_type, {static_cast<hsize_t>(row0 + b), 0},
              {static_cast<hsize_t>(n), static_cast<hsize_t>(width)}, buf.data());
    for (int64_t r = 0; r < n; ++r)
      widen(dtype, buf.data() + r * width + col0, out + (b + r) * cols, static_cast<size_t>(cols));
  }
}

// The /tokenizer dataset, checked to be a 1-D byte array; nullopt when absent.
std::optional<H5Obj> open_tokenizer(hid_t file, const std::string& path) {
  if (TPINFER_H5_CHECK(H5Lexists(file, kTokenizerDataset, H5P_DEFAULT)) == 0) return std::nullopt;
  H5Obj ds(TPINFER_H5_CHECK(H5Dopen2(file, kTokenizerDataset, H5P_DEFAULT)), H5Dclose);
  H5Obj type(TPINFER_H5_CHECK(H5Dget_type(ds.get())), H5Tclose);
  H5Obj space(TPINFER_H5_CHECK(H5Dget_space(ds.get())), H5Sclose);
  if (TPINFER_H5_CHECK(H5Tget_class(type.get())) != H5T_INTEGER || H5Tget_size(type.get()) != 1 ||
      TPINFER_H5_CHECK(H5Sget_simple_extent_ndims(space.get())) != 1)
    throw StoreError(path + ": dataset tokenizer is stored as " + describe_type(type.get()) +
                     " of rank " + std::to_string(H5Sget_simple_extent_ndims(space.get())) +
                     ", expected a 1-D array of bytes (uint8)");
  return ds;
}

struct TensorInfo {
  H5Obj dataset;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
};

// Trained weights are finite: a NaN or infinity means a corrupt file (a block
// of 0xff bytes, a bad conversion) that would otherwise only show as nonsense
// tokens. The format has no checksums, so finite garbage still passes.
void check_finite(const std::vector<float>& v, const std::string& what) {
  size_t bad = 0;
  for (float x : v) {  // exponent bits all ones; integer ops, so it vectorises
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    bad += (bits & 0x7f800000u) == 0x7f800000u;
  }
  if (bad == 0) return;
  size_t first = 0;
  while (std::isfinite(v[first])) ++first;
  throw StoreError(what + " holds " + std::to_string(bad) +
                   " non-finite value(s), the first at element " + std::to_string(first) +
                   " of the shard (rule: weights are finite; the file is corrupt)");
}

}  // namespace

// ---- WeightWriter -------------------------------------------------------------

struct WeightWriter::Impl {
  std::string path;
  ModelConfig config;
  H5Obj file;
};

WeightWriter::WeightWriter(const std::string& path, const ModelConfig& config)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->config = config;
  install_h5_error_handler();
  validate_config(config);
  h5_guard("cannot create model file " + path, [&] {
    H5Obj fapl(TPINFER_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
    // Lock while writing, but do not fail on file systems without flock (Lustre, NFS).
    TPINFER_H5_CHECK(H5Pset_file_locking(fapl.get(), true, true));
#endif
    impl_->file =
        H5Obj(TPINFER_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get())),
              H5Fclose);
    write_string_attr(impl_->file.get(), "format", kFormatName);
    write_int_attr(impl_->file.get(), "format_version", kFormatVersion);
    write_string_attr(impl_->file.get(), "config", config_to_json(config).dump());
  });
}

WeightWriter::~WeightWriter() = default;

void WeightWriter::write(const std::string& name, const std::vector<int64_t>& shape,
                         const float* data) {
  const std::string& path = impl_->path;
  if (!impl_->file) throw StoreError(path + ": cannot write tensor " + name + " after close()");
  check_root_name(path, name);
  if (name == kTokenizerDataset)
    throw StoreError(path + ": the name 'tokenizer' is reserved for the tokenizer dataset");
  std::vector<hsize_t> dims;
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw StoreError(path + ": tensor " + name + " has negative shape " + shape_str(shape));
    dims.push_back(static_cast<hsize_t>(d));
    numel *= d;
  }
  const DType dtype = impl_->config.dtype;
  h5_guard(path + ": cannot write tensor " + name, [&] {
    const hid_t file = impl_->file.get();
    if (TPINFER_H5_CHECK(H5Lexists(file, name.c_str(), H5P_DEFAULT)) > 0)
      throw StoreError(path + ": tensor " + name + " is written twice");
    H5Obj space = simple_space(dims);
    H5Obj dcpl(TPINFER_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
    // Contiguous: a rank's row slice is one contiguous byte range of the file.
    TPINFER_H5_CHECK(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS));
    // Every byte is written below; fill values would only double the I/O.
    TPINFER_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
    const hid_t file_type = dtype == DType::f32 ? H5T_IEEE_F32LE : H5T_STD_U16LE;
    H5Obj ds(TPINFER_H5_CHECK(H5Dcreate2(file, name.c_str(), file_type, space.get(), H5P_DEFAULT,
                                         dcpl.get(), H5P_DEFAULT)),
             H5Dclose);
    write_string_attr(ds.get(), "dtype", dtype_name(dtype));
    if (numel > 0 && dtype == DType::f32) {
      TPINFER_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    } else if (numel > 0) {
      // Narrow a block of rows at a time so memory stays near one fp32 tensor.
      const int64_t rows = dims.empty() ? 1 : shape[0];
      const int64_t row_elems = numel / rows;
      const int64_t per_block =
          std::max<int64_t>(1, static_cast<int64_t>(kBlockBytes / sizeof(uint16_t)) / row_elems);
      std::vector<uint16_t> buf(static_cast<size_t>(std::min(rows, per_block) * row_elems));
      for (int64_t b = 0; b < rows; b += per_block) {
        const int64_t n = std::min(per_block, rows - b);
        const float* src = data + b * row_elems;
        for (int64_t i = 0; i < n * row_elems; ++i)
          buf[i] = dtype == DType::bf16 ? float_to_bf16(src[i]) : float_to_fp16(src[i]);
        std::vector<hsize_t> start(dims.size(), 0), count = dims;
        if (!dims.empty()) {
          start[0] = static_cast<hsize_t>(b);
          count[0] = static_cast<hsize_t>(n);
        }
        write_slab(ds.get(), H5T_NATIVE_UINT16, start, count, buf.data());
      }
    }
    ds.close();
  });
}

void WeightWriter::write_tokenizer(const std::string& tokenizer_json) {
  const std::string& path = impl_->path;
  if (!impl_->file) throw StoreError(path + ": cannot write the tokenizer after close()");
  h5_guard(path + ": cannot write the tokenizer", [&] {
    const hid_t file = impl_->file.get();
    if (TPINFER_H5_CHECK(H5Lexists(file, kTokenizerDataset, H5P_DEFAULT)) > 0)
      throw StoreError(path + ": the tokenizer is written twice");
    H5Obj space = simple_space({static_cast<hsize_t>(tokenizer_json.size())});
    H5Obj ds(TPINFER_H5_CHECK(H5Dcreate2(file, kTokenizerDataset, H5T_STD_U8LE, space.get(),
                                         H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)),
             H5Dclose);
    if (!tokenizer_json.empty())
      TPINFER_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                tokenizer_json.data()));
    ds.close();
  });
}

void WeightWriter::close() {
  if (!impl_->file) return;
  h5_guard(impl_->path + ": cannot finish writing the model file", [&] {
    TPINFER_H5_CHECK(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL));
    impl_->file.close();
  });
}

// ---- WeightReader -------------------------------------------------------------

struct WeightReader::Impl {
  std::string path;
  H5Obj file;
  ModelConfig config;

  // Opens tensor `name`, checking it is a dataset with a known dtype attribute
  // and the storage type that dtype requires.
  TensorInfo open_tensor(const std::string& name) const {
    check_root_name(path, name);
    const std::string what = path + ": tensor " + name;
    if (TPINFER_H5_CHECK(H5Lexists(file.get(), name.c_str(), H5P_DEFAULT)) == 0)
      throw StoreError(what + " is missing");
    TensorInfo t;
    t.dataset = H5Obj(TPINFER_H5_CHECK(H5Oopen(file.get(), name.c_str(), H5P_DEFAULT)), H5Oclose);
    if (TPINFER_H5_CHECK(H5Iget_type(t.dataset.get())) != H5I_DATASET)
      throw StoreError(what + " is not a dataset");
    H5Obj space(TPINFER_H5_CHECK(H5Dget_space(t.dataset.get())), H5Sclose);
    if (TPINFER_H5_CHECK(H5Sget_simple_extent_type(space.get())) == H5S_NULL)
      throw StoreError(what + " has no shape (null dataspace)");
    const int rank = TPINFER_H5_CHECK(H5Sget_simple_extent_ndims(space.get()));
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    TPINFER_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
    t.shape.assign(dims.begin(), dims.end());

    const std::optional<std::string> attr = read_string_attr(t.dataset.get(), "dtype", what);
    if (!attr) throw StoreError(what + " has no dtype attribute (rule: every tensor carries one)");
    const std::optional<DType> dtype = dtype_from_attr(*attr);
    if (!dtype)
      throw StoreError(what + " has dtype attribute '" + *attr +
                       "', expected one of float32, bfloat16, float16");
    t.dtype = *dtype;
    H5Obj type(TPINFER_H5_CHECK(H5Dget_type(t.dataset.get())), H5Tclose);
    if (!storage_matches(type.get(), t.dtype))
      throw StoreError(
          what + " has dtype " + *attr + " but is stored as " + describe_type(type.get()) +
          (t.dtype == DType::f32 ? " (rule: float32 is stored as 32-bit IEEE float)"
                                 : " (rule: bfloat16 and float16 are stored as 16-bit unsigned "
                                   "integer bit patterns)"));
    return t;
  }
};

WeightReader::WeightReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  install_h5_error_handler();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found)
    throw ModelError("cannot open model file " + path + ": no such file");
  if (status.type() == std::filesystem::file_type::directory)
    throw ModelError("cannot open model file " + path + ": is a directory");

  h5_guard("cannot open model file " + path, [&] {
    if (TPINFER_H5_CHECK(H5Fis_hdf5(path.c_str())) == 0)
      throw StoreError(path + ": not an HDF5 file (no HDF5 signature; wrong file or truncated?)");
  });
  h5_guard(path + ": cannot open as HDF5", [&] {
    H5Obj fapl(TPINFER_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
    // Best-effort locking, as when writing: flock fails on some parallel file
    // systems. Locking stays on because HDF5 refuses to open a file twice in
    // one process with different locking flags, and H5P_DEFAULT locks.
    TPINFER_H5_CHECK(H5Pset_file_locking(fapl.get(), true, true));
#endif
    impl_->file =
        H5Obj(TPINFER_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get())), H5Fclose);
  });

  std::string config_text;
  h5_guard(path + ": cannot read the root attributes", [&] {
    const hid_t file = impl_->file.get();
    const std::optional<std::string> format = read_string_attr(file, "format", path);
    if (!format)
      throw StoreError(path + ": not a tpinfer model file (root attribute 'format' is missing)");
    if (*format != kFormatName)
      throw StoreError(path + ": not a tpinfer model file (root attribute format is '" + *format +
                       "', expected '" + kFormatName + "')");
    const std::optional<long long> version = read_int_attr(file, "format_version", path);
    if (!version) throw StoreError(path + ": root attribute 'format_version' is missing");
    if (*version != kFormatVersion)
      throw StoreError(path + ": format_version " + std::to_string(*version) +
                       " is not supported (this build reads version " +
                       std::to_string(kFormatVersion) + ")");
    const std::optional<std::string> config = read_string_attr(file, "config", path);
    if (!config) throw StoreError(path + ": root attribute 'config' is missing");
    config_text = *config;
  });

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(config_text);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path + ": root attribute config is not valid JSON: " + e.what());
  }
  try {
    impl_->config = config_from_hf_json(j);
  } catch (const ModelError& e) {
    throw ModelError(path + ": bad model config: " + e.what());
  }
}

WeightReader::~WeightReader() = default;

const ModelConfig& WeightReader::config() const {
  return impl_->config;
}

void WeightReader::validate(int tp_size) const {
  const std::string& path = impl_->path;
  try {
    check_tp_size(impl_->config, tp_size);
  } catch (const ModelError& e) {
    throw ModelError(path + ": " + e.what());
  }
  for (const TensorSpec& spec : expected_tensors(impl_->config)) {
    h5_guard(path + ": cannot read tensor " + spec.name, [&] {
      const TensorInfo t = impl_->open_tensor(spec.name);
      if (t.shape != spec.shape)
        throw StoreError(path + ": tensor " + spec.name + " has shape " + shape_str(t.shape) +
                         ", expected " + shape_str(spec.shape));
    });
  }
  h5_guard(path + ": cannot read the tokenizer", [&] { open_tokenizer(impl_->file.get(), path); });
}

std::vector<float> WeightReader::read(const TensorShard& shard) const {
  const std::string& path = impl_->path;
  std::vector<float> values = h5_guard(path + ": cannot read tensor " + shard.name, [&] {
    const TensorInfo t = impl_->open_tensor(shard.name);
    const std::string what = path + ": tensor " + shard.name;
    if (t.shape != shard.full_shape)
      throw StoreError(what + " has shape " + shape_str(t.shape) + ", expected " +
                       shape_str(shard.full_shape));
    const size_t rank = t.shape.size();
    if (shard.offset.size() != rank || shard.count.size() != rank)
      throw StoreError(what + ": hyperslab offset " + shape_str(shard.offset) + " / count " +
                       shape_str(shard.count) + " does not match its rank " + std::to_string(rank));
    for (size_t d = 0; d < rank; ++d) {
      if (shard.offset[d] < 0 || shard.count[d] < 0 ||
          shard.offset[d] + shard.count[d] > t.shape[d])
        throw StoreError(what + ": hyperslab offset " + shape_str(shard.offset) + " count " +
                         shape_str(shard.count) + " lies outside its shape " + shape_str(t.shape));
    }
    std::vector<float> out(static_cast<size_t>(shard.numel()));
    if (out.empty()) return out;
    const hid_t ds = t.dataset.get();
    const bool f32 = t.dtype == DType::f32;
    const hid_t mem_type = f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;

    if (rank == 2) {
      const int64_t width = t.shape[1];
      if (f32 && shard.count[1] == width) {  // whole rows of fp32: straight into `out`
        read_slab(ds, mem_type, {static_cast<hsize_t>(shard.offset[0]), 0},
                  {static_cast<hsize_t>(shard.count[0]), static_cast<hsize_t>(width)}, out.data());
      } else if (f32) {
        read_rows<float>(ds, mem_type, t.dtype, shard.offset[0], shard.count[0], width,
                         shard.offset[1], shard.count[1], out.data());
      } else {
        read_rows<uint16_t>(ds, mem_type, t.dtype, shard.offset[0], shard.count[0], width,
                            shard.offset[1], shard.count[1], out.data());
      }
      return out;
    }
    // Vectors and scalars are small; other ranks do not occur in this format's
    // models, so HDF5's general hyperslab read is good enough for them.
    const std::vector<hsize_t> start(shard.offset.begin(), shard.offset.end());
    const std::vector<hsize_t> count(shard.count.begin(), shard.count.end());
    if (f32) {
      read_slab(ds, mem_type, start, count, out.data());
    } else {
      std::vector<uint16_t> buf(out.size());
      read_slab(ds, mem_type, start, count, buf.data());
      widen(t.dtype, buf.data(), out.data(), out.size());
    }
    return out;
  });
  check_finite(values, path + ": tensor " + shard.name);
  return values;
}

DType WeightReader::tensor_dtype(const std::string& name) const {
  return h5_guard(impl_->path + ": cannot read tensor " + name,
                  [&] { return impl_->open_tensor(name).dtype; });
}

bool WeightReader::has_tokenizer() const {
  return h5_guard(impl_->path + ": cannot read the tokenizer", [&] {
    return TPINFER_H5_CHECK(H5Lexists(impl_->file.get(), kTokenizerDataset, H5P_DEFAULT)) > 0;
  });
}

std::string WeightReader::tokenizer_json() const {
  const std::string& path = impl_->path;
  return h5_guard(path + ": cannot read the tokenizer", [&] {
    std::optional<H5Obj> ds = open_tokenizer(impl_->file.get(), path);
    if (!ds) return std::string();
    H5Obj space(TPINFER_H5_CHECK(H5Dget_space(ds->get())), H5Sclose);
    const hssize_t n = TPINFER_H5_CHECK(H5Sget_simple_extent_npoints(space.get()));
    std::string bytes(static_cast<size_t>(n), '\0');
    if (n > 0)
      TPINFER_H5_CHECK(
          H5Dread(ds->get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()));
    return bytes;
  });
}

}  // namespace tpinfer
