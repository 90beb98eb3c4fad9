#include "weights/content_hash.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "base/error.hpp"

namespace tpinfer {

// Hashes are taken of the bytes as stored, and the weight file stores
// little-endian values: hashing host memory equals hashing the file only here.
static_assert(std::endian::native == std::endian::little,
              "content hashes assume a little-endian host (the file's byte order)");

namespace {
// Big enough that each read is one large sequential request (the hash runs at
// several GB/s, so small reads would make the syscalls the cost); small enough
// to stay in L2/L3 between the read and the hash.
constexpr size_t kFileBlockBytes = size_t{8} << 20;
}  // namespace

uint64_t xxh3_64(const void* data, size_t bytes) {
  return XXH3_64bits(data, bytes);
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---- streams ------------------------------------------------------------------------

struct Xxh3Stream64::State {
  XXH3_state_t* st = XXH3_createState();
  State() {
    if (st == nullptr) throw std::bad_alloc();
    XXH3_64bits_reset(st);
  }
  ~State() { XXH3_freeState(st); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

Xxh3Stream64::Xxh3Stream64() : s_(std::make_unique<State>()) {}
Xxh3Stream64::~Xxh3Stream64() = default;
Xxh3Stream64::Xxh3Stream64(Xxh3Stream64&&) noexcept = default;
Xxh3Stream64& Xxh3Stream64::operator=(Xxh3Stream64&&) noexcept = default;

void Xxh3Stream64::update(const void* data, size_t bytes) {
  XXH3_64bits_update(s_->st, data, bytes);
}
uint64_t Xxh3Stream64::digest() const {
  return XXH3_64bits_digest(s_->st);
}
void Xxh3Stream64::reset() {
  XXH3_64bits_reset(s_->st);
}

struct Xxh3Stream128::State {
  XXH3_state_t* st = XXH3_createState();
  State() {
    if (st == nullptr) throw std::bad_alloc();
    XXH3_128bits_reset(st);
  }
  ~State() { XXH3_freeState(st); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

Xxh3Stream128::Xxh3Stream128() : s_(std::make_unique<State>()) {}
Xxh3Stream128::~Xxh3Stream128() = default;

void Xxh3Stream128::update(const void* data, size_t bytes) {
  XXH3_128bits_update(s_->st, data, bytes);
}
void Xxh3Stream128::update_u64(uint64_t v) {
  update(&v, sizeof v);  // little-endian host (static_assert above)
}
void Xxh3Stream128::update_str(const std::string& s) {
  update_u64(s.size());
  update(s.data(), s.size());
}
std::string Xxh3Stream128::hex() const {
  const XXH128_hash_t h = XXH3_128bits_digest(s_->st);
  return hex64(h.high64) + hex64(h.low64);
}

std::string xxh3_128_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw InputError("cannot open " + path + " to fingerprint it: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint: larger read-ahead
  Xxh3Stream128 h;
  std::vector<char> buf(kFileBlockBytes);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw InputError("cannot read " + path + " to fingerprint it: " + std::strerror(errno));
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return h.hex();
}

// ---- tiles ----------------------------------------------------------------------------

int64_t TileGrid::grid_rows() const {
  return rows == 0 ? 1 : (rows + tile_rows - 1) / tile_rows;
}
int64_t TileGrid::grid_cols() const {
  return cols == 0 ? 1 : (cols + tile_cols - 1) / tile_cols;
}

namespace {
int64_t default_tile(int64_t dim) {
  if (dim <= 0) return 1;
  for (int64_t blocks : {16, 8, 4, 2})
    if (dim % blocks == 0) return dim / blocks;
  return (dim + 7) / 8;
}
}  // namespace

TileGrid view_of(const std::vector<int64_t>& shape, int64_t tile_rows, int64_t tile_cols) {
  TileGrid g;
  g.rows = shape.empty() ? 1 : shape[0];
  g.cols = 1;
  for (size_t d = 1; d < shape.size(); ++d) g.cols *= shape[d];
  g.tile_rows = tile_rows;
  g.tile_cols = tile_cols;
  return g;
}

TileGrid default_tile_grid(const std::vector<int64_t>& shape) {
  TileGrid g = view_of(shape, 1, 1);
  g.tile_rows = default_tile(g.rows);
  g.tile_cols = default_tile(g.cols);
  return g;
}

TileHasher::TileHasher(const TileGrid& g, size_t elem_bytes, int64_t first_row, int64_t first_col,
                       int64_t end_col, Done done)
    : g_(g),
      elem_(elem_bytes),
      row_(first_row),
      first_col_(first_col),
      end_col_(end_col),
      states_(static_cast<size_t>(end_col - first_col)),
      done_(std::move(done)) {}

void TileHasher::finish_band() {
  const int64_t band = row_ == 0 ? 0 : (row_ - 1) / g_.tile_rows;
  for (int64_t j = first_col_; j < end_col_; ++j) {
    Xxh3Stream64& s = states_[static_cast<size_t>(j - first_col_)];
    done_(band, j, s.digest());
    s.reset();
  }
}

void TileHasher::rows(const void* data, int64_t n, size_t pitch_bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  const size_t row_bytes = static_cast<size_t>(g_.cols) * elem_;
  // One tile across the whole row with rows packed: a band's rows are one
  // contiguous run of bytes, hashed in one call (vectors, narrow tensors).
  const bool contiguous = g_.grid_cols() == 1 && pitch_bytes == row_bytes;
  while (n > 0) {
    const int64_t band_end = std::min(g_.rows, (row_ / g_.tile_rows + 1) * g_.tile_rows);
    const int64_t take = std::min(n, band_end - row_);
    if (contiguous) {
      states_[0].update(p, static_cast<size_t>(take) * row_bytes);
    } else {
      for (int64_t r = 0; r < take; ++r) {
        const unsigned char* row = p + static_cast<size_t>(r) * pitch_bytes;
        for (int64_t j = first_col_; j < end_col_; ++j) {
          const int64_t c0 = j * g_.tile_cols, c1 = std::min(g_.cols, c0 + g_.tile_cols);
          states_[static_cast<size_t>(j - first_col_)].update(row + static_cast<size_t>(c0) * elem_,
                                                              static_cast<size_t>(c1 - c0) * elem_);
        }
      }
    }
    p += static_cast<size_t>(take) * pitch_bytes;
    row_ += take;
    n -= take;
    if (row_ == band_end) finish_band();
  }
}

std::string file_fingerprint(const std::string& path) {
  return "xxh3-128:" + xxh3_128_file(path);
}

}  // namespace tpinfer
