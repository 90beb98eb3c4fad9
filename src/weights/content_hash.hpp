#pragma once
// Content hashes (xxHash's XXH3, a fast non-cryptographic hash): whole files
// for the manifest's fingerprints, and the tiles of a model file's tensors
// (docs/WEIGHT_FORMAT.md, "Checksums"). They detect corruption and changed
// files, not tampering: XXH3 is not a cryptographic hash.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tpinfer {

uint64_t xxh3_64(const void* data, size_t bytes);

// XXH3-64 over data fed in pieces (equal to xxh3_64 of their concatenation).
class Xxh3Stream64 {
 public:
  Xxh3Stream64();
  ~Xxh3Stream64();
  Xxh3Stream64(Xxh3Stream64&&) noexcept;
  Xxh3Stream64& operator=(Xxh3Stream64&&) noexcept;
  void update(const void* data, size_t bytes);
  uint64_t digest() const;
  void reset();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// XXH3-128 over data fed in pieces; digest as 32 lowercase hex digits.
class Xxh3Stream128 {
 public:
  Xxh3Stream128();
  ~Xxh3Stream128();
  Xxh3Stream128(const Xxh3Stream128&) = delete;
  Xxh3Stream128& operator=(const Xxh3Stream128&) = delete;
  void update(const void* data, size_t bytes);
  void update_u64(uint64_t v);            // 8 bytes, little-endian
  void update_str(const std::string& s);  // length (u64), then the bytes
  std::string hex() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// XXH3-128 of a whole file's bytes, read in large sequential blocks; 32 hex
// digits. Throws InputError naming the file when it cannot be opened or read.
std::string xxh3_128_file(const std::string& path);

// "%016llx" of v.
std::string hex64(uint64_t v);

// ---- tiles -----------------------------------------------------------------------
// A tensor is hashed as a 2-D view: rows = shape[0] (1 for a scalar), cols = the
// product of the other dims (1 for a vector). The view is cut into a grid of
// tile_rows x tile_cols tiles (the last row and column of tiles may be
// shorter); a tile's hash is XXH3-64 of its stored bytes taken row by row.
struct TileGrid {
  int64_t rows = 1, cols = 1;            // of the 2-D view
  int64_t tile_rows = 1, tile_cols = 1;  // of one full tile
  int64_t grid_rows() const;             // tiles down (>= 1, also for an empty view)
  int64_t grid_cols() const;             // tiles across (>= 1)
  int64_t count() const { return grid_rows() * grid_cols(); }
};

// The 2-D view of `shape`, with the tiling tpinfer writes: per dim the largest
// of 16, 8, 4, 2 blocks that divides it (so the row and column slices of TP 1,
// 2, 4, 8 and, where it divides, 16 start and end on tile boundaries), else
// blocks of ceil(dim / 8).
TileGrid default_tile_grid(const std::vector<int64_t>& shape);
// The 2-D view of `shape` with a given tile size (as read from a file).
TileGrid view_of(const std::vector<int64_t>& shape, int64_t tile_rows, int64_t tile_cols);

// Hashes the tiles of tile columns [first_col, end_col) from consecutive rows
// of the view fed in order, starting at the first row of a tile row. Calls
// `done(tile_row, tile_col, hash)` as each tile is complete.
class TileHasher {
 public:
  using Done = std::function<void(int64_t, int64_t, uint64_t)>;
  TileHasher(const TileGrid& g, size_t elem_bytes, int64_t first_row, int64_t first_col,
             int64_t end_col, Done done);
  // `n` rows of the view, each `cols` elements long (the whole row) at a pitch
  // of `pitch_bytes`; the first is the next row this hasher expects.
  void rows(const void* data, int64_t n, size_t pitch_bytes);
  int64_t next_row() const { return row_; }

 private:
  void finish_band();
  TileGrid g_;
  size_t elem_;
  int64_t row_, first_col_, end_col_;
  std::vector<Xxh3Stream64> states_;
  Done done_;
};

// The fingerprint of a file's whole content: "xxh3-128:<32 hex digits>"
// (XXH3-128 of every byte, read in large blocks; several GB/s, see
// docs/PERF.md). Model files use model_fingerprint (weight_store.hpp), which
// reads only their stored hashes. Throws InputError naming the file.
std::string file_fingerprint(const std::string& path);

}  // namespace tpinfer
