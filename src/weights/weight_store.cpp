// The HDF5 weight store, format version 1 (docs/WEIGHT_FORMAT.md).
#include "weights/weight_store.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/half.hpp"
#include "base/lead_process.hpp"
#include "weights/content_hash.hpp"
#include "weights/hdf5_check.hpp"

namespace tpinfer {

namespace {

constexpr const char* kFormatName = "tpinfer";
constexpr long long kFormatVersion = 1;
constexpr const char* kTokenizerDataset = "tokenizer";
constexpr const char* kChatTemplateDataset = "chat_template";
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

// Unsigned 64-bit values (hashes, tile sizes); `dims` empty = a scalar.
void write_u64_attr(hid_t obj, const char* name, const std::vector<hsize_t>& dims,
                    const uint64_t* values) {
  H5Obj space = simple_space(dims);
  H5Obj attr(
      TPINFER_H5_CHECK(H5Acreate2(obj, name, H5T_STD_U64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)),
      H5Aclose);
  TPINFER_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_UINT64, values));
  attr.close();
}

struct U64Attr {
  std::vector<hsize_t> dims;  // empty for a scalar
  std::vector<uint64_t> values;
};

std::optional<U64Attr> read_u64_attr(hid_t obj, const char* name, const std::string& what) {
  if (TPINFER_H5_CHECK(H5Aexists(obj, name)) == 0) return std::nullopt;
  H5Obj attr(TPINFER_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
  H5Obj type(TPINFER_H5_CHECK(H5Aget_type(attr.get())), H5Tclose);
  if (TPINFER_H5_CHECK(H5Tget_class(type.get())) != H5T_INTEGER || H5Tget_size(type.get()) != 8)
    throw StoreError(what + ": attribute '" + name + "' is not a 64-bit integer");
  H5Obj space(TPINFER_H5_CHECK(H5Aget_space(attr.get())), H5Sclose);
  U64Attr a;
  const int rank = TPINFER_H5_CHECK(H5Sget_simple_extent_ndims(space.get()));
  a.dims.resize(static_cast<size_t>(rank));
  TPINFER_H5_CHECK(H5Sget_simple_extent_dims(space.get(), a.dims.data(), nullptr));
  a.values.resize(static_cast<size_t>(TPINFER_H5_CHECK(H5Sget_simple_extent_npoints(space.get()))));
  if (!a.values.empty()) TPINFER_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_UINT64, a.values.data()));
  return a;
}

// ---- checksums -------------------------------------------------------------------
// Root: config_xxh3 (XXH3-64 of the config text) and content_hash (XXH3-128 hex
// over the parts below); /tokenizer and /chat_template: xxh3 of their bytes; every tensor:
// tile_shape [tile rows, tile cols] of its 2-D view and tile_xxh3 [grid rows,
// grid cols] (docs/WEIGHT_FORMAT.md, "Checksums").
constexpr const char* kContentHashAttr = "content_hash";
constexpr const char* kConfigHashAttr = "config_xxh3";
constexpr const char* kTokenizerHashAttr = "xxh3";
constexpr const char* kTileShapeAttr = "tile_shape";
constexpr const char* kTileHashAttr = "tile_xxh3";
// Written when the file is created and replaced by close(): a file still
// holding it was never finished.
const std::string kUnsetContentHash(32, '0');

const char* const kCorruptAdvice = ": the file is corrupt; reconvert or copy it again";

struct TensorRecord {
  std::vector<int64_t> shape;
  std::string dtype;  // the dtype attribute
  TileGrid grid;
  std::vector<uint64_t> tile_hashes;  // grid rows x grid cols, row-major
};

// A byte dataset (/tokenizer, /chat_template): its length and hash.
struct TokenizerRecord {
  uint64_t bytes = 0;
  uint64_t xxh3 = 0;
};

bool is_byte_dataset(const std::string& name) {
  return name == kTokenizerDataset || name == kChatTemplateDataset;
}

// The content hash: a hash over the hashes of the parts, so it is computed
// from metadata alone (no weight is re-read) and each part's hash is checked
// against its bytes as they are read.
// The chat template comes last and only when present, so the hash of a file
// without one is what it was before templates were stored.
std::string content_hash_of(const std::string& config_text,
                            const std::optional<TokenizerRecord>& tokenizer,
                            const std::map<std::string, TensorRecord>& tensors,
                            const std::optional<TokenizerRecord>& chat_template) {
  Xxh3Stream128 h;
  h.update_str("tpinfer content hash v1");
  h.update_str(config_text);
  h.update_u64(tokenizer ? 1 : 0);
  if (tokenizer) {
    h.update_u64(tokenizer->bytes);
    h.update_u64(tokenizer->xxh3);
  }
  h.update_u64(tensors.size());
  for (const auto& [name, t] : tensors) {  // std::map: sorted by name bytes
    h.update_str(name);
    h.update_u64(t.shape.size());
    for (int64_t d : t.shape) h.update_u64(static_cast<uint64_t>(d));
    h.update_str(t.dtype);
    h.update_u64(static_cast<uint64_t>(t.grid.tile_rows));
    h.update_u64(static_cast<uint64_t>(t.grid.tile_cols));
    h.update_u64(t.tile_hashes.size());
    for (uint64_t v : t.tile_hashes) h.update_u64(v);
  }
  if (chat_template) {
    h.update_str(kChatTemplateDataset);
    h.update_u64(chat_template->bytes);
    h.update_u64(chat_template->xxh3);
  }
  return h.hex();
}

// The tile size and hashes of one dataset; nullopt when it has neither.
std::optional<std::pair<TileGrid, std::vector<uint64_t>>> read_tiles(
    hid_t ds, const std::vector<int64_t>& shape, const std::string& what) {
  const std::optional<U64Attr> tile = read_u64_attr(ds, kTileShapeAttr, what);
  const std::optional<U64Attr> hashes = read_u64_attr(ds, kTileHashAttr, what);
  if (!tile && !hashes) return std::nullopt;
  if (!tile || !hashes)
    throw StoreError(what + " has attribute '" + (tile ? kTileShapeAttr : kTileHashAttr) +
                     "' without '" + (tile ? kTileHashAttr : kTileShapeAttr) +
                     "' (rule: a tensor's checksums are both or neither)");
  const TileGrid probe = view_of(shape, 1, 1);
  if (tile->values.size() != 2 || tile->values[0] < 1 || tile->values[1] < 1 ||
      tile->values[0] > static_cast<uint64_t>(std::max<int64_t>(probe.rows, 1)) ||
      tile->values[1] > static_cast<uint64_t>(std::max<int64_t>(probe.cols, 1)))
    throw StoreError(what + ": attribute '" + kTileShapeAttr +
                     "' must hold 2 values in [1, rows] x [1, cols] of the tensor's 2-D view [" +
                     std::to_string(probe.rows) + ", " + std::to_string(probe.cols) + "]");
  const TileGrid g =
      view_of(shape, static_cast<int64_t>(tile->values[0]), static_cast<int64_t>(tile->values[1]));
  const std::vector<hsize_t> want = {static_cast<hsize_t>(g.grid_rows()),
                                     static_cast<hsize_t>(g.grid_cols())};
  if (hashes->dims != want)
    throw StoreError(what + ": attribute '" + kTileHashAttr + "' has " +
                     std::to_string(hashes->values.size()) + " values, expected [" +
                     std::to_string(want[0]) + ", " + std::to_string(want[1]) + "] for " +
                     kTileShapeAttr + " [" + std::to_string(g.tile_rows) + ", " +
                     std::to_string(g.tile_cols) + "]");
  return std::make_pair(g, hashes->values);
}

// read_tiles for a file that has a content_hash: every tensor has its checksums.
std::pair<TileGrid, std::vector<uint64_t>> required_tiles(hid_t ds,
                                                          const std::vector<int64_t>& shape,
                                                          const std::string& what) {
  auto tiles = read_tiles(ds, shape, what);
  if (!tiles)
    throw StoreError(what + " has no checksums (attributes " + kTileShapeAttr + ", " +
                     kTileHashAttr + ") though the file has a " + kContentHashAttr +
                     " (rule: a file with checksums has them on every tensor)" + kCorruptAdvice);
  return std::move(*tiles);
}

// Once per file and process, and only on the job's lead process (every rank
// loads the same file; one line says it for all of them).
void warn_once(const std::string& path, const std::string& line) {
  static std::mutex mu;
  static std::set<std::string> warned;
  {
    const std::lock_guard<std::mutex> lock(mu);
    if (!warned.insert(path).second) return;
  }
  if (!is_lead_process()) return;
  std::fprintf(stderr, "tpinfer: warning: %s\n", line.c_str());
}

void warn_unverified(const std::string& path) {
  warn_once(path, "model file " + path +
                      " has no checksums (it was written before tpinfer stored them): its "
                      "weights load unverified; write it again with tpinfer convert or "
                      "make-model to have every read checked");
}

std::string tile_error(const std::string& path, const std::string& name,
                       const std::vector<int64_t>& shape, const TileGrid& g, int64_t i, int64_t j,
                       uint64_t stored, uint64_t read) {
  const int64_t r0 = i * g.tile_rows, r1 = std::min(g.rows, r0 + g.tile_rows) - 1;
  const int64_t c0 = j * g.tile_cols, c1 = std::min(g.cols, c0 + g.tile_cols) - 1;
  std::string where;
  if (shape.size() <= 1)
    where = "tile " + std::to_string(i) + " (elements " + std::to_string(r0) + "-" +
            std::to_string(r1) + ")";
  else
    where = "tile (" + std::to_string(i) + ", " + std::to_string(j) + ") (rows " +
            std::to_string(r0) + "-" + std::to_string(r1) + ", cols " + std::to_string(c0) + "-" +
            std::to_string(c1) + ")";
  return "model file " + path + ": tensor " + name + ": " + where +
         " fails its checksum (stored xxh3 " + hex64(stored) + ", read " + hex64(read) + ")" +
         kCorruptAdvice;
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

void widen(DType d, const uint16_t* src, float* dst, size_t n) {
  widen_to_float(d, src, dst, n);
}

void widen(DType, const float* src, float* dst, size_t n) {
  std::copy(src, src + n, dst);
}

// A 16-bit tensor read as its stored bits (WeightReader::read_into).
void widen(DType, const uint16_t* src, uint16_t* dst, size_t n) {
  std::copy(src, src + n, dst);
}

// Reads rows [row0, row0 + rows) x columns [col0, col0 + cols) of a 2-D
// dataset with `width` columns. The file is read as whole rows, a block at a
// time, so every read is one large contiguous I/O; a column slice (row-parallel
// tensors) is then picked in memory. This beats HDF5's own strided hyperslab
// read of a contiguous dataset, which goes through its small sieve buffer
// (see docs/WEIGHT_FORMAT.md for the measurements).
template <typename Stored, typename Out>
void read_rows(hid_t ds, hid_t mem_type, DType dtype, int64_t row0, int64_t rows, int64_t width,
               int64_t col0, int64_t cols, Out* out) {
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

// A byte dataset (/tokenizer, /chat_template), checked to be a 1-D byte
// array; nullopt when absent.
std::optional<H5Obj> open_bytes(hid_t file, const std::string& path, const char* name) {
  if (TPINFER_H5_CHECK(H5Lexists(file, name, H5P_DEFAULT)) == 0) return std::nullopt;
  H5Obj ds(TPINFER_H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT)), H5Dclose);
  H5Obj type(TPINFER_H5_CHECK(H5Dget_type(ds.get())), H5Tclose);
  H5Obj space(TPINFER_H5_CHECK(H5Dget_space(ds.get())), H5Sclose);
  if (TPINFER_H5_CHECK(H5Tget_class(type.get())) != H5T_INTEGER || H5Tget_size(type.get()) != 1 ||
      TPINFER_H5_CHECK(H5Sget_simple_extent_ndims(space.get())) != 1)
    throw StoreError(path + ": dataset " + name + " is stored as " + describe_type(type.get()) +
                     " of rank " + std::to_string(H5Sget_simple_extent_ndims(space.get())) +
                     ", expected a 1-D array of bytes (uint8)");
  return ds;
}

struct TensorInfo {
  H5Obj dataset;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  bool verify = false;  // the tile hashes below are to be checked
  TileGrid grid;
  std::vector<uint64_t> tile_hashes;
};

// Trained weights are finite: a NaN or infinity means a corrupt file (a block
// of 0xff bytes, a bad conversion) that would otherwise only show as nonsense
// tokens. Kept beside the checksums for files without them (and for garbage
// written with its checksums, e.g. by a faulty converter).
bool non_finite(float x) {  // exponent bits all ones; integer ops, so it vectorises
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) == 0x7f800000u;
}

// The same test on the stored bits of a 16-bit value.
bool non_finite_bits(DType dtype, uint16_t bits) {
  const uint16_t exponent = dtype == DType::bf16 ? 0x7f80u : 0x7c00u;
  return (bits & exponent) == exponent;
}

template <typename Out>
void check_finite(DType stored, const Out* v, size_t n, const std::string& what) {
  const auto bad_at = [&](size_t i) {
    if constexpr (std::is_same_v<Out, float>)
      return non_finite(v[i]);
    else
      return non_finite_bits(stored, v[i]);
  };
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += bad_at(i);
  if (bad == 0) return;
  size_t first = 0;
  while (!bad_at(first)) ++first;
  throw StoreError(what + " holds " + std::to_string(bad) +
                   " non-finite value(s), the first at element " + std::to_string(first) +
                   " of the shard (rule: weights are finite; the file is corrupt)");
}

// Copies the part of one row of a rank >= 3 tensor (the sub-tensor of shape
// shape[1:]) that the hyperslab selects, widening to fp32 (Out = float) or
// copying the stored bits (Out = uint16_t).
template <typename Stored, typename Out>
void gather_row(DType dtype, const Stored* row, const std::vector<int64_t>& shape,
                const TensorShard& shard, Out* out) {
  const size_t rank = shape.size();
  std::vector<int64_t> stride(rank, 1);  // element strides inside one row (dims 1..rank-1)
  for (size_t d = rank - 1; d-- > 1;) stride[d] = stride[d + 1] * shape[d + 1];
  const int64_t inner = shard.count[rank - 1];
  std::vector<int64_t> idx(rank, 0);  // an odometer over dims 1..rank-2
  for (;;) {
    int64_t src = shard.offset[rank - 1];
    for (size_t d = 1; d + 1 < rank; ++d) src += (shard.offset[d] + idx[d]) * stride[d];
    widen(dtype, row + src, out, static_cast<size_t>(inner));
    out += inner;
    for (size_t d = rank - 1;;) {
      if (d == 1) return;
      --d;
      if (++idx[d] < shard.count[d]) break;
      idx[d] = 0;
    }
  }
}

// Reads the smallest region of whole tile rows that covers the hyperslab, as
// whole rows of the tensor's 2-D view in blocks of at most kBlockBytes (each
// one contiguous read; a column shard reads whole rows anyway, see read_rows),
// hashes every tile the hyperslab touches from the bytes as read, and widens
// (or, Out = uint16_t, copies) the hyperslab into `out`. A tile whose hash differs from the stored
// one throws before read() returns anything.
template <typename Stored, typename Out>
void read_verified(hid_t ds, hid_t mem_type, const TensorInfo& t, const TensorShard& shard,
                   const std::function<void(int64_t, int64_t, uint64_t)>& check, Out* out) {
  const TileGrid& g = t.grid;
  const size_t rank = t.shape.size();
  const int64_t r0 = rank == 0 ? 0 : shard.offset[0], nr = rank == 0 ? 1 : shard.count[0];
  const int64_t c0 = rank == 2 ? shard.offset[1] : 0;
  const int64_t nc = rank == 2 ? shard.count[1] : g.cols;
  const int64_t row_begin = r0 / g.tile_rows * g.tile_rows;
  const int64_t row_end = std::min(g.rows, (r0 + nr + g.tile_rows - 1) / g.tile_rows * g.tile_rows);
  const int64_t col_tile_begin = c0 / g.tile_cols;
  const int64_t col_tile_end = (c0 + nc + g.tile_cols - 1) / g.tile_cols;
  const size_t pitch = static_cast<size_t>(g.cols) * sizeof(Stored);
  TileHasher hasher(g, sizeof(Stored), row_begin, col_tile_begin, col_tile_end, check);

  // fp32 whole rows exactly on tile boundaries: the file's bytes are the
  // values, so they go straight into `out` in one read and are hashed there.
  if constexpr (std::is_same_v<Stored, float> && std::is_same_v<Out, float>) {
    if (rank == 2 && nc == g.cols && row_begin == r0 && row_end == r0 + nr) {
      read_slab(ds, mem_type, {static_cast<hsize_t>(r0), 0},
                {static_cast<hsize_t>(nr), static_cast<hsize_t>(g.cols)}, out);
      hasher.rows(out, nr, pitch);
      return;
    }
  }
  const int64_t per_block = std::max<int64_t>(
      1, static_cast<int64_t>(kBlockBytes / sizeof(Stored)) / std::max<int64_t>(1, g.cols));
  std::vector<Stored> buf(static_cast<size_t>(std::min(row_end - row_begin, per_block) * g.cols));
  const int64_t out_row = rank >= 3 ? shard.numel() / std::max<int64_t>(1, nr) : nc;
  for (int64_t b = row_begin; b < row_end; b += per_block) {
    const int64_t n = std::min(per_block, row_end - b);
    std::vector<hsize_t> start(rank, 0), count(t.shape.begin(), t.shape.end());
    if (rank > 0) {
      start[0] = static_cast<hsize_t>(b);
      count[0] = static_cast<hsize_t>(n);
    }
    read_slab(ds, mem_type, start, count, buf.data());
    hasher.rows(buf.data(), n, pitch);
    const int64_t first = std::max(b, r0), last = std::min(b + n, r0 + nr);
    if (rank < 3 && nc == g.cols && last > first) {  // whole rows: one run
      widen(t.dtype, buf.data() + (first - b) * g.cols, out + (first - r0) * nc,
            static_cast<size_t>((last - first) * nc));
      continue;
    }
    for (int64_t r = first; r < last; ++r) {
      const Stored* row = buf.data() + (r - b) * g.cols;
      Out* dst = out + (r - r0) * out_row;
      if (rank >= 3)
        gather_row(t.dtype, row, t.shape, shard, dst);
      else
        widen(t.dtype, row + c0, dst, static_cast<size_t>(nc));
    }
  }
}

// One validated hyperslab of `t` into `out`: float32 (widened), or the stored
// 16-bit values themselves (Out = uint16_t; the caller checked the dtype).
// Verifying, it reads the whole tiles the hyperslab touches and checks each.
template <typename Out>
void read_hyperslab(const TensorInfo& t, const std::string& path, const TensorShard& shard,
                    Out* out) {
  const hid_t ds = t.dataset.get();
  const bool f32 = t.dtype == DType::f32;
  const hid_t mem_type = f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT16;
  const size_t rank = t.shape.size();
  const auto n = static_cast<size_t>(shard.numel());
  if (t.verify) {
    const auto check = [&](int64_t i, int64_t j, uint64_t h) {
      const uint64_t stored = t.tile_hashes[static_cast<size_t>(i * t.grid.grid_cols() + j)];
      if (h != stored)
        throw StoreError(tile_error(path, shard.name, t.shape, t.grid, i, j, stored, h));
    };
    if constexpr (std::is_same_v<Out, float>) {
      if (f32) return read_verified<float>(ds, mem_type, t, shard, check, out);
    }
    return read_verified<uint16_t>(ds, mem_type, t, shard, check, out);
  }
  if (rank == 2) {
    const int64_t width = t.shape[1];
    if constexpr (std::is_same_v<Out, float>) {
      if (f32 && shard.count[1] == width)  // whole rows of fp32: straight into `out`
        return read_slab(ds, mem_type, {static_cast<hsize_t>(shard.offset[0]), 0},
                         {static_cast<hsize_t>(shard.count[0]), static_cast<hsize_t>(width)}, out);
      if (f32)
        return read_rows<float>(ds, mem_type, t.dtype, shard.offset[0], shard.count[0], width,
                                shard.offset[1], shard.count[1], out);
    }
    return read_rows<uint16_t>(ds, mem_type, t.dtype, shard.offset[0], shard.count[0], width,
                               shard.offset[1], shard.count[1], out);
  }
  // Vectors and scalars are small; other ranks do not occur in this format's
  // models, so HDF5's general hyperslab read is good enough for them.
  const std::vector<hsize_t> start(shard.offset.begin(), shard.offset.end());
  const std::vector<hsize_t> count(shard.count.begin(), shard.count.end());
  if constexpr (std::is_same_v<Out, float>) {
    if (f32) return read_slab(ds, mem_type, start, count, out);
  }
  std::vector<uint16_t> buf(n);
  read_slab(ds, mem_type, start, count, buf.data());
  widen(t.dtype, buf.data(), out, n);
}

}  // namespace

// ---- WeightWriter -------------------------------------------------------------

struct WeightWriter::Impl {
  std::string path;
  ModelConfig config;
  H5Obj file;
  // What close() hashes into content_hash.
  std::string config_text;
  std::optional<TokenizerRecord> tokenizer, chat_template;
  std::map<std::string, TensorRecord> tensors;

  // Writes `bytes` as the 1-D byte dataset `name` with its xxh3 attribute.
  TokenizerRecord write_bytes(const char* name, const std::string& bytes, const char* what) {
    if (!file) throw StoreError(path + ": cannot write the " + what + " after close()");
    return h5_guard(path + ": cannot write the " + what, [&] {
      const hid_t f = file.get();
      if (TPINFER_H5_CHECK(H5Lexists(f, name, H5P_DEFAULT)) > 0)
        throw StoreError(path + ": the " + what + " is written twice");
      H5Obj space = simple_space({static_cast<hsize_t>(bytes.size())});
      H5Obj ds(TPINFER_H5_CHECK(H5Dcreate2(f, name, H5T_STD_U8LE, space.get(), H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT)),
               H5Dclose);
      if (!bytes.empty())
        TPINFER_H5_CHECK(
            H5Dwrite(ds.get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()));
      const TokenizerRecord rec{bytes.size(), xxh3_64(bytes.data(), bytes.size())};
      write_u64_attr(ds.get(), kTokenizerHashAttr, {}, &rec.xxh3);
      ds.close();
      return rec;
    });
  }
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
    impl_->config_text = config_to_json(config).dump();
    write_string_attr(impl_->file.get(), "config", impl_->config_text);
    const uint64_t config_hash = xxh3_64(impl_->config_text.data(), impl_->config_text.size());
    write_u64_attr(impl_->file.get(), kConfigHashAttr, {}, &config_hash);
    // A placeholder of the final size, so close() rewrites it in place near
    // the start of the file and a file whose writer never finished says so.
    write_string_attr(impl_->file.get(), kContentHashAttr, kUnsetContentHash);
  });
}

WeightWriter::~WeightWriter() = default;

void WeightWriter::write(const std::string& name, const std::vector<int64_t>& shape,
                         const float* data) {
  const std::string& path = impl_->path;
  if (!impl_->file) throw StoreError(path + ": cannot write tensor " + name + " after close()");
  check_root_name(path, name);
  if (is_byte_dataset(name))
    throw StoreError(path + ": the name '" + name + "' is reserved for the " + name + " dataset");
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
    TensorRecord rec;
    rec.shape = shape;
    rec.dtype = dtype_name(dtype);
    rec.grid = default_tile_grid(shape);
    const TileGrid& g = rec.grid;
    rec.tile_hashes.assign(static_cast<size_t>(g.count()), xxh3_64(nullptr, 0));
    const auto keep = [&](int64_t i, int64_t j, uint64_t h) {
      rec.tile_hashes[static_cast<size_t>(i * g.grid_cols() + j)] = h;
    };
    if (numel > 0 && dtype == DType::f32) {
      TPINFER_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
      TileHasher(g, sizeof(float), 0, 0, g.grid_cols(), keep)
          .rows(data, g.rows, static_cast<size_t>(g.cols) * sizeof(float));
    } else if (numel > 0) {
      // Narrow a block of rows at a time so memory stays near one fp32 tensor;
      // each block is hashed as it will be stored.
      TileHasher hasher(g, sizeof(uint16_t), 0, 0, g.grid_cols(), keep);
      const int64_t rows = g.rows, row_elems = g.cols;
      const int64_t per_block =
          std::max<int64_t>(1, static_cast<int64_t>(kBlockBytes / sizeof(uint16_t)) / row_elems);
      std::vector<uint16_t> buf(static_cast<size_t>(std::min(rows, per_block) * row_elems));
      for (int64_t b = 0; b < rows; b += per_block) {
        const int64_t n = std::min(per_block, rows - b);
        const float* src = data + b * row_elems;
        for (int64_t i = 0; i < n * row_elems; ++i)
          buf[i] = dtype == DType::bf16 ? float_to_bf16(src[i]) : float_to_fp16(src[i]);
        hasher.rows(buf.data(), n, static_cast<size_t>(row_elems) * sizeof(uint16_t));
        std::vector<hsize_t> start(dims.size(), 0), count = dims;
        if (!dims.empty()) {
          start[0] = static_cast<hsize_t>(b);
          count[0] = static_cast<hsize_t>(n);
        }
        write_slab(ds.get(), H5T_NATIVE_UINT16, start, count, buf.data());
      }
    }
    const uint64_t tile[2] = {static_cast<uint64_t>(g.tile_rows),
                              static_cast<uint64_t>(g.tile_cols)};
    write_u64_attr(ds.get(), kTileShapeAttr, {2}, tile);
    write_u64_attr(ds.get(), kTileHashAttr,
                   {static_cast<hsize_t>(g.grid_rows()), static_cast<hsize_t>(g.grid_cols())},
                   rec.tile_hashes.data());
    ds.close();
    impl_->tensors.emplace(name, std::move(rec));
  });
}

void WeightWriter::write_tokenizer(const std::string& tokenizer_json) {
  impl_->tokenizer = impl_->write_bytes(kTokenizerDataset, tokenizer_json, "tokenizer");
}

void WeightWriter::write_chat_template(const StoredChatTemplate& chat) {
  nlohmann::json j = {{"template", chat.source}};
  if (chat.bos_token) j["bos_token"] = *chat.bos_token;
  if (chat.eos_token) j["eos_token"] = *chat.eos_token;
  impl_->chat_template = impl_->write_bytes(kChatTemplateDataset, j.dump(), "chat template");
}

void WeightWriter::close() {
  if (!impl_->file) return;
  h5_guard(impl_->path + ": cannot finish writing the model file", [&] {
    const std::string hash =
        content_hash_of(impl_->config_text, impl_->tokenizer, impl_->tensors, impl_->chat_template);
    H5Obj attr(TPINFER_H5_CHECK(H5Aopen(impl_->file.get(), kContentHashAttr, H5P_DEFAULT)),
               H5Aclose);
    H5Obj type(TPINFER_H5_CHECK(H5Aget_type(attr.get())), H5Tclose);
    TPINFER_H5_CHECK(H5Awrite(attr.get(), type.get(), hash.c_str()));
    attr.close();
    TPINFER_H5_CHECK(H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL));
    impl_->file.close();
  });
}

// ---- WeightReader -------------------------------------------------------------

struct WeightReader::Impl {
  std::string path;
  H5Obj file;
  ModelConfig config;
  std::string config_text;
  bool verify = true;      // the caller wants checksums checked
  bool checksums = false;  // the file has them (root attribute content_hash)
  std::string content_hash;

  bool verifying() const { return verify && checksums; }

  // Opens tensor `name`, checking it is a dataset with a known dtype attribute
  // and the storage type that dtype requires.
  // with_tiles: also read the tile grid and hashes when verifying (what a
  // read needs; a dtype or shape query does not).
  TensorInfo open_tensor(const std::string& name, bool with_tiles = true) const {
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
    if (with_tiles && verifying()) {
      auto tiles = required_tiles(t.dataset.get(), t.shape, what);
      t.verify = true;
      t.grid = tiles.first;
      t.tile_hashes = std::move(tiles.second);
    }
    return t;
  }

  // The content hash recomputed from the config text and the stored hashes of
  // the tokenizer and of every dataset in the file.
  std::string recompute_content_hash() const {
    const hid_t f = file.get();
    const auto record_of = [&](const char* name) -> std::optional<TokenizerRecord> {
      std::optional<H5Obj> ds = open_bytes(f, path, name);
      if (!ds) return std::nullopt;
      const std::string what = path + ": dataset " + name;
      const std::optional<U64Attr> h = read_u64_attr(ds->get(), kTokenizerHashAttr, what);
      if (!h || !h->dims.empty())
        throw StoreError(what + " has no scalar checksum attribute '" + kTokenizerHashAttr +
                         "' though the file has a " + kContentHashAttr + kCorruptAdvice);
      H5Obj space(TPINFER_H5_CHECK(H5Dget_space(ds->get())), H5Sclose);
      return TokenizerRecord{
          static_cast<uint64_t>(TPINFER_H5_CHECK(H5Sget_simple_extent_npoints(space.get()))),
          h->values[0]};
    };
    const std::optional<TokenizerRecord> tokenizer = record_of(kTokenizerDataset);
    const std::optional<TokenizerRecord> chat_template = record_of(kChatTemplateDataset);
    H5G_info_t info;
    TPINFER_H5_CHECK(H5Gget_info(f, &info));
    std::map<std::string, TensorRecord> tensors;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      const ssize_t len = TPINFER_H5_CHECK(
          H5Lget_name_by_idx(f, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT));
      std::string name(static_cast<size_t>(len) + 1, '\0');
      TPINFER_H5_CHECK(H5Lget_name_by_idx(f, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                                          name.size(), H5P_DEFAULT));
      name.resize(static_cast<size_t>(len));
      if (is_byte_dataset(name)) continue;
      const std::string what = path + ": tensor " + name;
      const TensorInfo t = open_tensor(name);
      auto tiles = required_tiles(t.dataset.get(), t.shape, what);
      TensorRecord rec;
      rec.shape = t.shape;
      rec.dtype = dtype_name(t.dtype);
      rec.grid = tiles.first;
      rec.tile_hashes = std::move(tiles.second);
      tensors.emplace(name, std::move(rec));
    }
    return content_hash_of(config_text, tokenizer, tensors, chat_template);
  }

  // The bytes of a byte dataset, checked against their hash when verifying;
  // nullopt when absent.
  std::optional<std::string> read_bytes(const char* name, const char* what) const {
    return h5_guard(path + ": cannot read the " + what, [&]() -> std::optional<std::string> {
      std::optional<H5Obj> ds = open_bytes(file.get(), path, name);
      if (!ds) return std::nullopt;
      H5Obj space(TPINFER_H5_CHECK(H5Dget_space(ds->get())), H5Sclose);
      const hssize_t n = TPINFER_H5_CHECK(H5Sget_simple_extent_npoints(space.get()));
      std::string bytes(static_cast<size_t>(n), '\0');
      if (n > 0)
        TPINFER_H5_CHECK(
            H5Dread(ds->get(), H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()));
      if (verifying()) {
        const std::optional<U64Attr> stored =
            read_u64_attr(ds->get(), kTokenizerHashAttr, path + ": dataset " + name);
        if (!stored || !stored->dims.empty())
          throw StoreError("model file " + path + ": dataset " + name +
                           " has no scalar checksum attribute '" + kTokenizerHashAttr +
                           "' though the file has a " + kContentHashAttr + kCorruptAdvice);
        const uint64_t read = xxh3_64(bytes.data(), bytes.size());
        if (read != stored->values[0])
          throw StoreError("model file " + path + ": the " + what + " (" + std::to_string(n) +
                           " bytes) fails its checksum (stored xxh3 " + hex64(stored->values[0]) +
                           ", read " + hex64(read) + ")" + kCorruptAdvice);
      }
      return bytes;
    });
  }
};

WeightReader::WeightReader(const std::string& path, bool verify) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->verify = verify;
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
    const std::optional<std::string> content = read_string_attr(file, kContentHashAttr, path);
    if (!content) return;
    impl_->checksums = true;
    impl_->content_hash = *content;
    if (!verify) return;
    if (content->size() != 32 ||
        content->find_first_not_of("0123456789abcdef") != std::string::npos)
      throw StoreError("model file " + path + ": root attribute " + kContentHashAttr + " '" +
                       *content + "' is not 32 hex digits" + kCorruptAdvice);
    if (*content == kUnsetContentHash)
      throw StoreError("model file " + path + " was not completely written (its writer never set " +
                       kContentHashAttr +
                       "; an interrupted make-model or convert?): write it again");
    const std::optional<U64Attr> stored = read_u64_attr(file, kConfigHashAttr, path);
    if (!stored || !stored->dims.empty())
      throw StoreError("model file " + path + " has no scalar root attribute '" + kConfigHashAttr +
                       "' though it has a " + kContentHashAttr + kCorruptAdvice);
    const uint64_t read = xxh3_64(config_text.data(), config_text.size());
    if (read != stored->values[0])
      throw StoreError("model file " + path + ": root attribute config fails its checksum " +
                       "(stored xxh3 " + hex64(stored->values[0]) + ", read " + hex64(read) + ")" +
                       kCorruptAdvice);
  });
  impl_->config_text = config_text;

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
  if (!impl_->checksums)
    warn_unverified(path);
  else if (!verify)
    warn_once(path, "model file " + path +
                        ": checksum verification is off (--verify-weights off): its weights "
                        "load unverified");
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
  h5_guard(path + ": cannot read the tokenizer",
           [&] { open_bytes(impl_->file.get(), path, kTokenizerDataset); });
  h5_guard(path + ": cannot read the chat template",
           [&] { open_bytes(impl_->file.get(), path, kChatTemplateDataset); });
}

void WeightReader::read_into(const TensorShard& shard, DType as, void* out) const {
  const std::string& path = impl_->path;
  const std::string what = path + ": tensor " + shard.name;
  const DType stored = h5_guard(path + ": cannot read tensor " + shard.name, [&] {
    const TensorInfo t = impl_->open_tensor(shard.name);
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
    if (as != DType::f32 && as != t.dtype)
      throw StoreError(what + " is stored as " + dtype_name(t.dtype) + "; it reads as float32 " +
                       "or as its stored bits, not as " + dtype_name(as));
    if (shard.numel() == 0) return t.dtype;
    if (as == DType::f32)
      read_hyperslab(t, path, shard, static_cast<float*>(out));
    else
      read_hyperslab(t, path, shard, static_cast<uint16_t*>(out));
    return t.dtype;
  });
  const auto n = static_cast<size_t>(shard.numel());
  if (as == DType::f32)
    check_finite(stored, static_cast<const float*>(out), n, what);
  else
    check_finite(stored, static_cast<const uint16_t*>(out), n, what);
}

std::vector<float> WeightReader::read(const TensorShard& shard) const {
  std::vector<float> values(static_cast<size_t>(std::max<int64_t>(0, shard.numel())));
  read_into(shard, DType::f32, values.data());
  return values;
}

DType WeightReader::tensor_dtype(const std::string& name) const {
  return h5_guard(impl_->path + ": cannot read tensor " + name,
                  [&] { return impl_->open_tensor(name, /*with_tiles=*/false).dtype; });
}

bool WeightReader::has_tokenizer() const {
  return h5_guard(impl_->path + ": cannot read the tokenizer", [&] {
    return TPINFER_H5_CHECK(H5Lexists(impl_->file.get(), kTokenizerDataset, H5P_DEFAULT)) > 0;
  });
}

std::string WeightReader::tokenizer_json() const {
  return impl_->read_bytes(kTokenizerDataset, "tokenizer").value_or(std::string());
}

bool WeightReader::has_chat_template() const {
  return h5_guard(impl_->path + ": cannot read the chat template", [&] {
    return TPINFER_H5_CHECK(H5Lexists(impl_->file.get(), kChatTemplateDataset, H5P_DEFAULT)) > 0;
  });
}

std::optional<StoredChatTemplate> WeightReader::chat_template() const {
  const std::optional<std::string> bytes = impl_->read_bytes(kChatTemplateDataset, "chat template");
  if (!bytes) return std::nullopt;
  const std::string what = impl_->path + ": dataset chat_template";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(*bytes);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(what + " is not valid JSON: " + e.what());
  }
  const auto string_field = [&](const char* key, bool required) -> std::optional<std::string> {
    const auto it = j.is_object() ? j.find(key) : j.end();
    if (j.is_object() && (it == j.end() || it->is_null()) && !required) return std::nullopt;
    if (!j.is_object() || it == j.end() || !it->is_string())
      throw ModelError(what + ": \"" + key + "\" must be a string (rule: the dataset holds " +
                       "{\"template\": ..., \"bos_token\": ..., \"eos_token\": ...})");
    return it->get<std::string>();
  };
  StoredChatTemplate out;
  out.source = *string_field("template", true);
  out.bos_token = string_field("bos_token", false);
  out.eos_token = string_field("eos_token", false);
  return out;
}

bool WeightReader::has_checksums() const {
  return impl_->checksums;
}

std::string WeightReader::fingerprint() const {
  const std::string& path = impl_->path;
  if (!impl_->checksums) {
    warn_unverified(path);
    return file_fingerprint(path);
  }
  const std::string computed = h5_guard(path + ": cannot read the checksums",
                                        [&] { return impl_->recompute_content_hash(); });
  if (computed != impl_->content_hash)
    throw ModelError("model file " + path + ": its parts' checksums do not add up to its " +
                     kContentHashAttr + " (stored " + impl_->content_hash + ", computed " +
                     computed +
                     "): the file is corrupt or was changed after it was written; "
                     "reconvert or copy it again");
  return "content-xxh3-128:" + computed;
}

std::string model_fingerprint(const std::string& path) {
  return WeightReader(path).fingerprint();
}

}  // namespace tpinfer
