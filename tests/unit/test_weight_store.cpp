// The HDF5 weight store: bf16/fp16 conversions, seeded random models, write/read
// round trips of every TP shard, and one clear error line for each kind of bad file.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/half.hpp"
#include "base/philox.hpp"
#include "job/journal.hpp"
#include "model_error_matchers.hpp"
#include "weights/content_hash.hpp"
#include "weights/sharding.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using namespace test;

// One file per test so that ctest may run the tests in parallel.
std::string tmp_file(const std::string& suffix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name() + suffix;
  for (char& ch : name)
    if (ch == '/') ch = '_';  // parameterised test names
  return std::string(TPINFER_TEST_TMP) + "/weights_" + name + ".h5";
}

// Qwen2-style (q/k/v biases), 4 query heads on 2 KV heads (split at tp=2,
// replicated at tp=4), vocab 99 so vocab slices are uneven.
ModelConfig small_config(DType dtype) {
  const nlohmann::json j = {{"architectures", {"Qwen2ForCausalLM"}},
                            {"hidden_size", 64},
                            {"intermediate_size", 128},
                            {"num_hidden_layers", 2},
                            {"num_attention_heads", 4},
                            {"num_key_value_heads", 2},
                            {"vocab_size", 99},
                            {"max_position_embeddings", 256},
                            {"rms_norm_eps", 1e-5},
                            {"rope_theta", 500000.0},
                            {"eos_token_id", {7, 9}},
                            {"bos_token_id", 1},
                            {"torch_dtype", dtype_name(dtype)}};
  return config_from_hf_json(j);
}

// ---- raw HDF5 edits that make a good file bad -----------------------------------
#define H5_OK(call) ASSERT_GE((call), 0) << #call

void edit_string_attr(const std::string& path, const std::string& object, const char* attr,
                      const std::string* value, bool variable_length = false) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5_OK(f);
  const hid_t obj = H5Oopen(f, object.c_str(), H5P_DEFAULT);
  H5_OK(obj);
  if (H5Aexists(obj, attr) > 0) {
    H5_OK(H5Adelete(obj, attr));
  }
  if (value != nullptr) {
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5_OK(H5Tset_size(type, variable_length ? H5T_VARIABLE : value->size() + 1));
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(obj, attr, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5_OK(a);
    const char* text = value->c_str();
    H5_OK(variable_length ? H5Awrite(a, type, &text) : H5Awrite(a, type, text));
    H5_OK(H5Aclose(a));
    H5_OK(H5Sclose(space));
    H5_OK(H5Tclose(type));
  }
  H5_OK(H5Oclose(obj));
  H5_OK(H5Fclose(f));
}

void set_root_int_attr(const std::string& path, const char* attr, int value) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5_OK(f);
  if (H5Aexists(f, attr) > 0) {
    H5_OK(H5Adelete(f, attr));
  }
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(f, attr, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5_OK(a);
  H5_OK(H5Awrite(a, H5T_NATIVE_INT, &value));
  H5_OK(H5Aclose(a));
  H5_OK(H5Sclose(space));
  H5_OK(H5Fclose(f));
}

// Deletes every checksum attribute: the file as tpinfer wrote it before checksums.
void strip_checksums(const std::string& path) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5_OK(f);
  for (const char* a : {"content_hash", "config_xxh3"}) {
    H5_OK(H5Adelete(f, a));
  }
  H5G_info_t info;
  H5_OK(H5Gget_info(f, &info));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[256];
    H5_OK(
        H5Lget_name_by_idx(f, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT));
    const hid_t ds = H5Oopen(f, name, H5P_DEFAULT);
    H5_OK(ds);
    for (const char* a : {"tile_shape", "tile_xxh3", "xxh3"}) {
      if (H5Aexists(ds, a) > 0) {
        H5_OK(H5Adelete(ds, a));
      }
    }
    H5_OK(H5Oclose(ds));
  }
  H5_OK(H5Fclose(f));
}

// The byte offset of element `index` of dataset `name` (contiguous layout).
uint64_t element_offset(const std::string& path, const std::string& name, uint64_t index) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0);
  const hid_t ds = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  EXPECT_GE(ds, 0);
  const hid_t type = H5Dget_type(ds);
  const uint64_t offset = H5Dget_offset(ds) + index * H5Tget_size(type);
  EXPECT_NE(H5Dget_offset(ds), HADDR_UNDEF);
  H5Tclose(type);
  H5Dclose(ds);
  H5Fclose(f);
  return offset;
}

// Flips the lowest bit of the byte at `offset`: in the low byte of a 16-bit or
// 32-bit little-endian float it changes the value by one unit in the last
// place, so the value stays finite and only a checksum can notice.
void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 1);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
  ASSERT_TRUE(f.good()) << path;
}

std::string root_string_attr(const std::string& path, const char* attr) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t a = H5Aopen(f, attr, H5P_DEFAULT);
  const hid_t type = H5Aget_type(a);
  std::string value(H5Tget_size(type), '\0');
  H5Aread(a, type, value.data());
  value.resize(strlen(value.c_str()));
  H5Tclose(type);
  H5Aclose(a);
  H5Fclose(f);
  return value;
}

std::vector<float> slice_2d(const std::vector<float>& full, int64_t width, int64_t r0, int64_t nr,
                            int64_t c0, int64_t nc) {
  std::vector<float> out;
  for (int64_t r = r0; r < r0 + nr; ++r)
    for (int64_t c = c0; c < c0 + nc; ++c) out.push_back(full[r * width + c]);
  return out;
}

TensorShard full_shard(const TensorSpec& spec) {
  return {spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0), spec.shape};
}

// ---- bf16 / fp16 conversions --------------------------------------------------------

// Independent reference: the nearer of the two bf16 neighbours, ties to even.
uint16_t reference_bf16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double below = std::fabs(static_cast<double>(f) - bf16_to_float(lo));
  const double above = std::fabs(static_cast<double>(float_of(static_cast<uint32_t>(hi) << 16)) -
                                 static_cast<double>(f));
  if (below < above) return lo;
  if (above < below) return hi;
  return (lo & 1) ? hi : lo;
}

TEST(HalfConversion, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3F80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  // The largest float rounds up past the largest bf16: infinity.
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  // A NaN whose payload is only in the low bits must not become infinity.
  const uint16_t nan = float_to_bf16(float_of(0x7F800001u));
  EXPECT_TRUE(std::isnan(bf16_to_float(nan))) << std::hex << nan;
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(-std::nanf("")))));
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xC0A0), -5.0f);
}

TEST(HalfConversion, Bf16MatchesReferenceAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), h) << std::hex << h;
  }
  // Random float bit patterns (all exponents, subnormals included).
  for (uint64_t i = 0; i < 200000; ++i) {
    const float f = float_of(philox4x32(42, 0, i)[0]);
    if (std::isnan(f) || std::isinf(f) || std::fabs(f) > 3.3e38f) continue;
    ASSERT_EQ(float_to_bf16(f), reference_bf16(f)) << f;
  }
}

TEST(HalfConversion, Fp16KnownValues) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(float_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7BFF);  // largest finite
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);  // halfway to 2^16: ties to even = infinity
  EXPECT_EQ(float_to_fp16(1e6f), 0x7C00);
  EXPECT_EQ(float_to_fp16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(float_to_fp16(1.0f + 0x1p-11f), 0x3C00);      // tie, even stays
  EXPECT_EQ(float_to_fp16(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie, rounds up to even
  // Subnormals count units of 2^-24.
  EXPECT_EQ(float_to_fp16(0x1p-24f), 0x0001);
  EXPECT_EQ(float_to_fp16(-0x1p-24f), 0x8001);
  EXPECT_EQ(float_to_fp16(0x1p-25f), 0x0000);            // half a unit: tie to even zero
  EXPECT_EQ(float_to_fp16(0x1.8p-25f), 0x0001);          // 0.75 units
  EXPECT_EQ(float_to_fp16(3 * 0x1p-25f), 0x0002);        // 1.5 units: tie to even 2
  EXPECT_EQ(float_to_fp16(1023.5f * 0x1p-24f), 0x0400);  // rounds up into the smallest normal
  EXPECT_EQ(float_to_fp16(0x1p-14f), 0x0400);
  EXPECT_EQ(float_to_fp16(1e-10f), 0x0000);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(float_of(0x7F800001u)))));
  EXPECT_EQ(fp16_to_float(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16_to_float(0x83FF), -1023 * 0x1p-24f);
  EXPECT_EQ(fp16_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_float(0x3555), 0.333251953125f);
}

TEST(HalfConversion, Fp16RoundTripsAndMatchesCompiler) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << std::hex << h;
  }
#ifdef __FLT16_MAX__
  // The compiler's float -> _Float16 conversion is an independent RNE oracle.
  for (uint64_t i = 0; i < 200000; ++i) {
    uint32_t u = philox4x32(7, 0, i)[0];
    // Half the samples near fp16's range, where the interesting cases are.
    if (i % 2) u = (u & 0x807FFFFFu) | ((100u + (u >> 23) % 50u) << 23);
    const float f = float_of(u);
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t expected;
    std::memcpy(&expected, &h, sizeof expected);
    ASSERT_EQ(float_to_fp16(f), expected) << f;
  }
#endif
}

// ---- random models ----------------------------------------------------------------

TEST(RandomModel, ValuesFollowTheDocumentedFormula) {
  const ModelConfig c = small_config(DType::f32);
  const uint64_t seed = 99;
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  unsigned char seed_bytes[8];
  for (int i = 0; i < 8; ++i) seed_bytes[i] = static_cast<unsigned char>(seed >> (8 * i));
  const uint64_t key = fnv1a64(seed_bytes, 8, fnv1a64(name.data(), name.size()));
  const std::vector<float> v = random_tensor_values(c, {name, {64, 128}, {0, 0}, {64, 128}}, seed);
  for (uint64_t index : {0ull, 1ull, 5ull, 4095ull, 8191ull}) {
    const float z = philox_normal2(key, 0, index / 2)[index % 2];
    EXPECT_EQ(v[index], static_cast<float>(c.initializer_range) * z) << index;
  }
}

TEST(RandomModel, ShardsAreSlicesOfTheFullTensor) {
  const ModelConfig c = small_config(DType::bf16);
  for (const TensorSpec& spec : expected_tensors(c)) {
    const std::vector<float> full = random_tensor_values(c, full_shard(spec), 5);
    for (int tp : {2, 4}) {
      for (int r = 0; r < tp; ++r) {
        const TensorShard s = shard_of(c, spec, r, tp);
        std::vector<float> expected;
        if (spec.shape.size() == 1) {
          expected.assign(full.begin() + s.offset[0], full.begin() + s.offset[0] + s.count[0]);
        } else {
          expected =
              slice_2d(full, spec.shape[1], s.offset[0], s.count[0], s.offset[1], s.count[1]);
        }
        ASSERT_EQ(random_tensor_values(c, s, 5), expected)
            << spec.name << " tp " << tp << " rank " << r;
      }
    }
  }
}

TEST(RandomModel, DistributionsPerTensorKind) {
  ModelConfig c = small_config(DType::f32);
  c.initializer_range = 0.1;  // must be the stddev of linear weights and embeddings
  struct Moments {
    double sum = 0, sq = 0;
    int64_t n = 0;
    void add(const std::vector<float>& v) {
      for (float x : v) {
        sum += x;
        sq += double(x) * x;
        ++n;
      }
    }
    double mean() const { return sum / n; }
    double stddev() const { return std::sqrt(sq / n - mean() * mean()); }
  } linear, bias, norm;
  for (const TensorSpec& spec : expected_tensors(c)) {
    const std::vector<float> v = random_tensor_values(c, full_shard(spec), 11);
    const std::string& n = spec.name;
    if (n.ends_with("norm.weight"))
      norm.add(v);
    else if (n.ends_with("_proj.bias"))
      bias.add(v);
    else
      linear.add(v);
  }
  EXPECT_NEAR(linear.mean(), 0.0, 0.003);
  EXPECT_NEAR(linear.stddev(), 0.1, 0.003);
  EXPECT_NEAR(bias.mean(), 0.0, 0.004);
  EXPECT_NEAR(bias.stddev(), 0.02, 0.003);
  EXPECT_NEAR(norm.mean(), 1.0, 0.01);
  EXPECT_NEAR(norm.stddev(), 0.05, 0.008);
}

TEST(RandomModel, DependsOnSeedAndName) {
  const ModelConfig c = small_config(DType::bf16);
  const TensorShard a{"model.layers.0.self_attn.q_proj.weight", {64, 64}, {0, 0}, {64, 64}};
  TensorShard b = a;
  b.name = "model.layers.1.self_attn.q_proj.weight";
  EXPECT_EQ(random_tensor_values(c, a, 1), random_tensor_values(c, a, 1));
  EXPECT_NE(random_tensor_values(c, a, 1), random_tensor_values(c, a, 2));
  EXPECT_NE(random_tensor_values(c, a, 1), random_tensor_values(c, b, 1));
  // Values are already rounded to the storage dtype.
  for (float v : random_tensor_values(c, a, 1)) ASSERT_EQ(bf16_to_float(float_to_bf16(v)), v);
}

// ---- round trips ----------------------------------------------------------------------

class WeightStoreRoundTrip : public ::testing::TestWithParam<DType> {};

TEST_P(WeightStoreRoundTrip, EveryShardOfEveryTensorAtTp124) {
  const ModelConfig c = small_config(GetParam());
  const std::string path = tmp_file();
  const uint64_t seed = 1234;
  write_random_model(c, path, seed);
  WeightReader r(path);
  EXPECT_EQ(r.config().hidden_size, 64);
  EXPECT_EQ(r.config().num_kv_heads, 2);
  EXPECT_EQ(r.config().dtype, GetParam());
  EXPECT_EQ(r.config().eos_token_ids, (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(r.config().rope_theta, 500000.0);
  EXPECT_TRUE(r.config().attention_bias);
  EXPECT_FALSE(r.has_tokenizer());
  EXPECT_EQ(r.tokenizer_json(), "");
  // 16-bit files hold values of their dtype; f32 files keep bits 16-bit types lose.
  bool f32_only_value = false;
  auto round_trip = [](DType d, float v) {
    return d == DType::bf16 ? bf16_to_float(float_to_bf16(v)) : fp16_to_float(float_to_fp16(v));
  };
  for (int tp : {1, 2, 4}) {
    r.validate(tp);
    for (const TensorSpec& spec : expected_tensors(c)) {
      ASSERT_EQ(r.tensor_dtype(spec.name), GetParam()) << spec.name;
      for (int rank = 0; rank < tp; ++rank) {
        const TensorShard s = shard_of(c, spec, rank, tp);
        const std::vector<float> got = r.read(s);
        ASSERT_EQ(got, random_tensor_values(c, s, seed))
            << spec.name << " tp " << tp << " rank " << rank;
        for (float v : got) {
          if (GetParam() != DType::f32) {
            ASSERT_EQ(round_trip(GetParam(), v), v);
          }
          f32_only_value |= round_trip(DType::bf16, v) != v && round_trip(DType::f16, v) != v;
        }
      }
    }
  }
  EXPECT_EQ(f32_only_value, GetParam() == DType::f32);
  fs::remove(path);
}

// read_into as the stored dtype gives the stored bits: widened, read()'s
// values, with the tile checks on and off, for every shard at TP 1, 2, 4
// (row and column slices); float32 files only read as float32.
TEST_P(WeightStoreRoundTrip, StoredBitsOfEveryShardWidenToRead) {
  const ModelConfig c = small_config(GetParam());
  const std::string path = tmp_file();
  write_random_model(c, path, 99);
  ::testing::internal::CaptureStderr();  // verify=false warns once
  for (const bool verify : {true, false}) {
    WeightReader r(path, verify);
    for (int tp : {1, 2, 4})
      for (const TensorSpec& spec : expected_tensors(c))
        for (int rank = 0; rank < tp; ++rank) {
          const TensorShard sh = shard_of(c, spec, rank, tp);
          const std::vector<float> want = r.read(sh);
          if (GetParam() == DType::f32) {
            std::vector<uint16_t> bits(want.size());
            expect_model_error([&] { r.read_into(sh, DType::bf16, bits.data()); },
                               {spec.name, "is stored as float32",
                                "reads as float32 or as its stored bits, not as bfloat16"});
            continue;
          }
          std::vector<uint16_t> bits(want.size(), 0xffff);
          r.read_into(sh, GetParam(), bits.data());
          std::vector<float> widened(bits.size());
          for (size_t i = 0; i < bits.size(); ++i)
            widened[i] =
                GetParam() == DType::bf16 ? bf16_to_float(bits[i]) : fp16_to_float(bits[i]);
          ASSERT_EQ(widened, want) << spec.name << " tp " << tp << " rank " << rank;
          std::vector<float> into(want.size(), -1.0f);
          r.read_into(sh, DType::f32, into.data());
          ASSERT_EQ(into, want);
          const DType other = GetParam() == DType::bf16 ? DType::f16 : DType::bf16;
          expect_model_error([&] { r.read_into(sh, other, bits.data()); },
                             {spec.name, std::string("is stored as ") + dtype_name(GetParam()),
                              std::string("not as ") + dtype_name(other)});
        }
  }
  ::testing::internal::GetCapturedStderr();
  fs::remove(path);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, WeightStoreRoundTrip,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(WeightStore, ExplicitValuesRowAndColumnSlices) {
  for (DType d : {DType::f32, DType::bf16, DType::f16}) {
    const std::string path = tmp_file(dtype_name(d));
    const std::vector<float> t = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    // 65504 is fp16's largest finite value; 65520 would round to inf, which the
    // reader refuses (WeightChecksums.NonFiniteValuesWithoutChecksums).
    const std::vector<float> tricky = {1.00390625f, 0x1p-24f, -3.5f, 65504.0f};
    {
      WeightWriter w(path, small_config(d));
      w.write("t", {3, 4}, t.data());
      w.write("v", {4}, tricky.data());
      w.close();
    }
    WeightReader r(path);
    EXPECT_EQ(r.read({"t", {3, 4}, {0, 0}, {3, 4}}), t);
    EXPECT_EQ(r.read({"t", {3, 4}, {0, 1}, {3, 2}}), (std::vector<float>{1, 2, 5, 6, 9, 10}));
    EXPECT_EQ(r.read({"t", {3, 4}, {1, 0}, {2, 4}}),
              (std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11}));
    EXPECT_EQ(r.read({"t", {3, 4}, {2, 3}, {1, 1}}), (std::vector<float>{11}));
    EXPECT_EQ(r.read({"t", {3, 4}, {1, 0}, {0, 4}}), (std::vector<float>{}));
    std::vector<float> expected = tricky;
    for (float& v : expected) {
      if (d == DType::bf16) v = bf16_to_float(float_to_bf16(v));
      if (d == DType::f16) v = fp16_to_float(float_to_fp16(v));
    }
    EXPECT_EQ(r.read({"v", {4}, {0}, {4}}), expected);
    EXPECT_EQ(r.read({"v", {4}, {1}, {2}}), (std::vector<float>{expected[1], expected[2]}));
    if (d == DType::bf16) {
      EXPECT_EQ(expected[0], 1.0f);  // the tie rounded to even
    }
    if (d == DType::f16) {
      EXPECT_EQ(expected[3], 65504.0f);  // exactly representable, not rounded to inf
    }
    EXPECT_EQ(r.tensor_dtype("t"), d);
    fs::remove(path);
  }
}

// Tensors large enough that the reader goes through several blocks, with
// block boundaries that do not line up with the shard.
TEST(WeightStore, LargeTensorsReadInBlocks) {
  for (DType d : {DType::f32, DType::f16}) {
    const int64_t rows = d == DType::f32 ? 2101 : 3300, width = 2600;
    std::vector<float> full(static_cast<size_t>(rows * width));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < width; ++j)  // small integers: exact in every dtype
        full[i * width + j] = static_cast<float>((i * 131 + j * 17) % 509) - 254.0f;
    const std::string path = tmp_file(dtype_name(d));
    {
      WeightWriter w(path, small_config(d));
      w.write("big", {rows, width}, full.data());
      w.close();
    }
    WeightReader r(path);
    EXPECT_EQ(r.read({"big", {rows, width}, {0, 0}, {rows, width}}), full);
    for (int tp : {2, 4, 8}) {
      const int64_t nc = width / tp;
      for (int rank = 0; rank < tp; rank += tp - 1) {  // first and last rank
        EXPECT_EQ(r.read({"big", {rows, width}, {0, rank * nc}, {rows, nc}}),
                  slice_2d(full, width, 0, rows, rank * nc, nc))
            << dtype_name(d) << " column shard tp " << tp << " rank " << rank;
      }
    }
    EXPECT_EQ(r.read({"big", {rows, width}, {1000, 700}, {1100, 1400}}),
              slice_2d(full, width, 1000, 1100, 700, 1400));
    EXPECT_EQ(r.read({"big", {rows, width}, {7, 0}, {rows - 9, width}}),
              slice_2d(full, width, 7, rows - 9, 0, width));
    fs::remove(path);
  }
}

TEST(WeightStore, TokenizerRoundTrip) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  // UTF-8 and an embedded NUL: the bytes must come back exactly.
  const char raw[] = "{\"model\": {\"vocab\": {\"\xC3\xBC\": 0}}}\0tail";
  const std::string tok(raw, sizeof raw - 1);
  {
    WeightWriter w(path, c);
    for (const TensorSpec& spec : expected_tensors(c)) {
      const std::vector<float> v = random_tensor_values(c, full_shard(spec), 3);
      w.write(spec.name, spec.shape, v.data());
    }
    w.write_tokenizer(tok);
    w.close();
  }
  WeightReader r(path);
  r.validate(2);
  EXPECT_TRUE(r.has_tokenizer());
  EXPECT_EQ(r.tokenizer_json(), tok);
  EXPECT_EQ(r.tokenizer_json().size(), sizeof raw - 1);
  fs::remove(path);
}

TEST(WeightStore, ReadsVariableLengthStringAttributes) {
  // h5py writes a Python str attribute as a variable-length string.
  const ModelConfig c = small_config(DType::f32);
  const std::string path = tmp_file();
  write_random_model(c, path, 1);
  const std::string format = "tpinfer", dtype = "float32";
  edit_string_attr(path, "/", "format", &format, true);
  edit_string_attr(path, "model.norm.weight", "dtype", &dtype, true);
  WeightReader r(path);
  r.validate(1);
  EXPECT_EQ(r.tensor_dtype("model.norm.weight"), DType::f32);
  fs::remove(path);
}

TEST(WeightStore, WriterRejectsBadNamesAndDuplicates) {
  const std::string path = tmp_file();
  WeightWriter w(path, small_config(DType::f32));
  const float x[2] = {1, 2};
  w.write("a.b", {2}, x);
  expect_model_error([&] { w.write("a.b", {2}, x); }, {path, "a.b", "written twice"});
  expect_model_error([&] { w.write("a/b", {2}, x); }, {path, "a/b", "no '/'"});
  expect_model_error([&] { w.write("tokenizer", {2}, x); }, {path, "reserved"});
  w.close();
  expect_model_error([&] { w.write("c", {2}, x); }, {path, "after close"});
  fs::remove(path);
}

TEST(WeightStore, WriterReportsTheSystemError) {
  const std::string path = std::string(TPINFER_TEST_TMP) + "/no-such-dir/m.h5";
  ::testing::internal::CaptureStderr();
  expect_model_error([&] { WeightWriter w(path, small_config(DType::f32)); },
                     {"cannot create model file " + path, "No such file or directory"});
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// ---- bad files ------------------------------------------------------------------------

// A complete bf16 model, minus `skip`, with `override_name` written as `override_shape`.
std::string write_model(const std::string& path, const ModelConfig& c, const std::string& skip = "",
                        const std::string& override_name = "",
                        const std::vector<int64_t>& override_shape = {}) {
  WeightWriter w(path, c);
  for (TensorSpec spec : expected_tensors(c)) {
    if (spec.name == skip) continue;
    if (spec.name == override_name) spec.shape = override_shape;
    const std::vector<float> v = random_tensor_values(c, full_shard(spec), 3);
    w.write(spec.name, spec.shape, v.data());
  }
  w.close();
  return path;
}

TEST(WeightStoreBadFile, MissingTensor) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = write_model(tmp_file(), c, "lm_head.weight");
  WeightReader r(path);
  try {
    r.validate(1);
    ADD_FAILURE() << "validate accepted a file without lm_head.weight";
  } catch (const ModelError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": tensor lm_head.weight is missing");
  }
  expect_model_error(
      [&] {
        r.read({"lm_head.weight", {99, 64}, {0, 0}, {99, 64}});
      },
      {path, "tensor lm_head.weight is missing"});
  fs::remove(path);
}

TEST(WeightStoreBadFile, WrongShape) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  const std::string path = write_model(tmp_file(), c, "", name, {64, 64});
  WeightReader r(path);
  try {
    r.validate(2);
    ADD_FAILURE() << "validate accepted a wrong shape";
  } catch (const ModelError& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": tensor " + name + " has shape [64, 64], expected [128, 64]");
  }
  expect_model_error(
      [&] {
        r.read(shard_of(c, {name, {128, 64}}, 0, 2));
      },
      {path, name, "[64, 64]", "expected [128, 64]"});
  fs::remove(path);
}

TEST(WeightStoreBadFile, WrongDtypeAttribute) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  const std::string path = write_model(tmp_file(), c);
  const std::string int8 = "int8", f32 = "float32";
  edit_string_attr(path, q, "dtype", &int8);
  expect_model_error([&] { WeightReader(path).validate(1); },
                     {path, "tensor " + q, "dtype attribute 'int8'", "float32, bfloat16, float16"});
  // A float32 label on uint16 storage would reinterpret the bits: refused.
  edit_string_attr(path, q, "dtype", &f32);
  expect_model_error([&] { WeightReader(path).validate(1); },
                     {path, "tensor " + q, "dtype float32", "16-bit unsigned integer"});
  expect_model_error([&] { WeightReader(path).tensor_dtype(q); }, {path, q, "16-bit unsigned"});
  edit_string_attr(path, q, "dtype", nullptr);
  expect_model_error([&] { WeightReader(path).validate(1); },
                     {path, "tensor " + q, "has no dtype attribute"});
  fs::remove(path);
}

TEST(WeightStoreBadFile, MissingFile) {
  const std::string path = std::string(TPINFER_TEST_TMP) + "/does-not-exist.h5";
  try {
    WeightReader r(path);
    ADD_FAILURE() << "opened a missing file";
  } catch (const ModelError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot open model file " + path + ": no such file");
  }
}

TEST(WeightStoreBadFile, NotAnHdf5File) {
  const std::string path = tmp_file();
  std::ofstream(path) << "{\"this\": \"is json, not HDF5\"}\n";
  ::testing::internal::CaptureStderr();
  expect_model_error([&] { WeightReader r(path); }, {path, "not an HDF5 file"});
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");  // HDF5's stack is not printed
  fs::remove(path);
}

TEST(WeightStoreBadFile, TruncatedFile) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string good = write_model(tmp_file("_good"), c);
  const auto size = fs::file_size(good);
  const std::string path = tmp_file();
  for (uintmax_t keep : {size / 2, size - 1, uintmax_t{4096}, uintmax_t{4}, uintmax_t{0}}) {
    fs::copy_file(good, path, fs::copy_options::overwrite_existing);
    fs::resize_file(path, keep);
    ::testing::internal::CaptureStderr();
    std::vector<std::string> parts = {path};
    if (keep > 1000) parts.push_back("truncated");
    expect_model_error([&] { WeightReader(path).validate(1); }, parts);
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "keep " << keep;
  }
  fs::remove(good);
  fs::remove(path);
}

TEST(WeightStoreBadFile, WrongFormatAttributes) {
  const ModelConfig c = small_config(DType::f32);
  const std::string path = write_model(tmp_file(), c);
  set_root_int_attr(path, "format_version", 2);
  expect_model_error([&] { WeightReader r(path); },
                     {path, "format_version 2 is not supported", "version 1"});
  set_root_int_attr(path, "format_version", 1);
  WeightReader(path).validate(1);  // the edit helpers themselves leave a good file

  const std::string other = "safetensors";
  edit_string_attr(path, "/", "format", &other);
  expect_model_error([&] { WeightReader r(path); },
                     {path, "not a tpinfer model file", "safetensors"});
  edit_string_attr(path, "/", "format", nullptr);
  expect_model_error([&] { WeightReader r(path); }, {path, "'format' is missing"});
  fs::remove(path);
}

TEST(WeightStoreBadFile, BadConfig) {
  const ModelConfig c = small_config(DType::f32);
  const std::string path = write_model(tmp_file(), c);
  // Without checksums, so the config's own checks speak (with them, the
  // edited config fails its checksum first: ConfigAndTokenizerChecksums).
  strip_checksums(path);
  const std::string not_json = "{\"hidden_size\": 64,";
  edit_string_attr(path, "/", "config", &not_json);
  expect_model_error([&] { WeightReader r(path); }, {path, "config is not valid JSON"});
  nlohmann::json j = config_to_json(c);
  j.erase("hidden_size");
  const std::string incomplete = j.dump();
  edit_string_attr(path, "/", "config", &incomplete);
  expect_model_error([&] { WeightReader r(path); }, {path, "bad model config", "hidden_size"});
  fs::remove(path);
}

TEST(WeightStoreBadFile, TpSizeThatCannotShard) {
  const ModelConfig c = small_config(DType::bf16);  // 4 heads, 2 KV heads
  const std::string path = write_model(tmp_file(), c);
  WeightReader r(path);
  expect_model_error([&] { r.validate(3); }, {path, "TP size 3", "heads % tp == 0"});
  expect_model_error([&] { r.validate(8); }, {path, "TP size 8", "heads % tp == 0"});
  r.validate(4);
  fs::remove(path);
}

TEST(WeightStoreBadFile, HyperslabOutsideTheTensor) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = write_model(tmp_file(), c);
  WeightReader r(path);
  const std::string n = "model.norm.weight";
  expect_model_error([&] { r.read({n, {64}, {60}, {8}}); }, {path, n, "outside"});
  expect_model_error([&] { r.read({n, {64}, {0, 0}, {64, 1}}); }, {path, n, "rank"});
  expect_model_error(
      [&] {
        r.read({n, {32}, {0}, {32}});
      },
      {path, n, "has shape [64], expected [32]"});
  fs::remove(path);
}

// ---- checksums ---------------------------------------------------------------------

// The tiles are cut so that every TP rank's hyperslab (column-parallel rows,
// row-parallel columns, vocab slices of ceil(V/tp) rows) starts and ends on
// tile boundaries for TP 1, 2, 4, 8 (and 16 where the model allows it).
TEST(WeightChecksums, TileGridAlignsWithTheShardsOfCommonTpSizes) {
  const nlohmann::json llama3_8b = {{"architectures", {"LlamaForCausalLM"}},
                                    {"hidden_size", 4096},
                                    {"intermediate_size", 14336},
                                    {"num_hidden_layers", 1},
                                    {"num_attention_heads", 32},
                                    {"num_key_value_heads", 8},
                                    {"vocab_size", 128256},
                                    {"max_position_embeddings", 8192},
                                    {"rms_norm_eps", 1e-5},
                                    {"rope_theta", 500000.0},
                                    {"torch_dtype", "bfloat16"}};
  const ModelConfig c = config_from_hf_json(llama3_8b);
  int checked = 0;
  for (const TensorSpec& spec : expected_tensors(c)) {
    const TileGrid g = default_tile_grid(spec.shape);
    EXPECT_LE(g.count(), 256) << spec.name;
    for (int tp : {1, 2, 4, 8, 16}) {
      for (int rank = 0; rank < tp; ++rank) {
        const TensorShard s = shard_of(c, spec, rank, tp);
        const int64_t tile[2] = {g.tile_rows, g.tile_cols};
        for (size_t d = 0; d < s.offset.size(); ++d) {
          const int64_t end = s.offset[d] + s.count[d];
          EXPECT_EQ(s.offset[d] % tile[d], 0) << spec.name << " tp " << tp << " rank " << rank;
          EXPECT_TRUE(end % tile[d] == 0 || end == spec.shape[d])
              << spec.name << " tp " << tp << " rank " << rank;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 651);  // 9 matrices x 2 dims + 3 vectors, each at 1+2+4+8+16 = 31 ranks
  // The rule itself: 16 blocks where 16 divides, then 8, 4, 2; odd sizes in
  // blocks of ceil(dim / 8).
  EXPECT_EQ(default_tile_grid({128256, 4096}).tile_rows, 8016);
  EXPECT_EQ(default_tile_grid({24, 4}).tile_rows, 3);
  EXPECT_EQ(default_tile_grid({24, 6}).tile_cols, 3);
  EXPECT_EQ(default_tile_grid({99, 64}).tile_rows, 13);
  EXPECT_EQ(default_tile_grid({99, 64}).grid_rows(), 8);
  EXPECT_EQ(default_tile_grid({64}).cols, 1);
}

// Every tensor carries tile_shape and tile_xxh3, equal to XXH3-64 of the tile's
// stored bytes taken row by row (computed here from the raw uint16 data), and
// the root content_hash is what fingerprint() reports.
TEST(WeightChecksums, StoredTileHashesAreThoseOfTheStoredBytes) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  write_random_model(c, path, 5);
  const std::string name = "model.layers.0.mlp.down_proj.weight";  // [64, 128]
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t ds = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  std::vector<uint16_t> raw(64 * 128);
  ASSERT_GE(H5Dread(ds, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), 0);
  uint64_t tile[2] = {0, 0};
  std::vector<uint64_t> hashes(16 * 16);
  const hid_t ts = H5Aopen(ds, "tile_shape", H5P_DEFAULT);
  ASSERT_GE(H5Aread(ts, H5T_NATIVE_UINT64, tile), 0);
  const hid_t th = H5Aopen(ds, "tile_xxh3", H5P_DEFAULT);
  const hid_t space = H5Aget_space(th);
  ASSERT_EQ(H5Sget_simple_extent_npoints(space), 256);
  ASSERT_GE(H5Aread(th, H5T_NATIVE_UINT64, hashes.data()), 0);
  H5Sclose(space);
  H5Aclose(th);
  H5Aclose(ts);
  H5Dclose(ds);
  H5Fclose(f);
  EXPECT_EQ(tile[0], 4u);  // 64 rows in 16 tiles
  EXPECT_EQ(tile[1], 8u);  // 128 columns in 16 tiles
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      std::vector<uint16_t> bytes;
      for (int r = i * 4; r < i * 4 + 4; ++r)
        bytes.insert(bytes.end(), raw.begin() + r * 128 + j * 8, raw.begin() + r * 128 + j * 8 + 8);
      ASSERT_EQ(hashes[i * 16 + j], xxh3_64(bytes.data(), bytes.size() * 2)) << i << ", " << j;
    }
  }
  WeightReader r(path);
  EXPECT_TRUE(r.has_checksums());
  const std::string stored = root_string_attr(path, "content_hash");
  EXPECT_EQ(stored.size(), 32u);
  EXPECT_NE(stored, std::string(32, '0'));
  EXPECT_EQ(r.fingerprint(), "content-xxh3-128:" + stored);
  EXPECT_EQ(model_fingerprint(path), r.fingerprint());
  // The same model written again has the same content hash; another seed not.
  const std::string again = tmp_file("_again"), other = tmp_file("_other");
  write_random_model(c, again, 5);
  write_random_model(c, other, 6);
  EXPECT_EQ(model_fingerprint(again), r.fingerprint());
  EXPECT_NE(model_fingerprint(other), r.fingerprint());
  fs::remove(path);
  fs::remove(again);
  fs::remove(other);
}

struct FlipCase {
  const char* name;  // tensor
  int64_t row, col;  // the element whose byte is flipped
  int64_t tile_row, tile_col;
  const char* where;  // the tile as the error names it
};

// One bit flipped inside a column-parallel (gate_proj, rows split) and a
// row-parallel (down_proj, columns split) tensor: at TP 1, 2 and 4 every rank
// whose hyperslab holds the tile fails naming tensor and tile; the others read
// their (untouched) shard exactly.
TEST(WeightChecksums, AFlippedByteFailsTheShardsThatHoldItsTile) {
  const ModelConfig c = small_config(DType::bf16);
  const uint64_t seed = 77;
  const FlipCase cases[] = {
      // gate_proj [128, 64]: tiles of 8 rows x 4 cols
      {"model.layers.1.mlp.gate_proj.weight", 70, 37, 8, 9, "tile (8, 9) (rows 64-71, cols 36-39)"},
      // down_proj [64, 128]: tiles of 4 rows x 8 cols
      {"model.layers.0.mlp.down_proj.weight", 10, 100, 2, 12,
       "tile (2, 12) (rows 8-11, cols 96-103)"},
  };
  for (const FlipCase& fc : cases) {
    const std::string path = tmp_file(fc.name);
    write_random_model(c, path, seed);
    const TensorSpec spec = [&] {
      for (const TensorSpec& s : expected_tensors(c))
        if (s.name == fc.name) return s;
      return TensorSpec{};
    }();
    ASSERT_EQ(spec.shape.size(), 2u) << fc.name;
    flip_byte(path, element_offset(path, fc.name, fc.row * spec.shape[1] + fc.col));
    WeightReader r(path);
    r.validate(4);  // metadata only: still fine
    for (int tp : {1, 2, 4}) {
      for (int rank = 0; rank < tp; ++rank) {
        const TensorShard s = shard_of(c, spec, rank, tp);
        const bool split_rows = s.count[0] != spec.shape[0];
        const int64_t at = split_rows ? fc.row : fc.col;
        const size_t dim = split_rows ? 0 : 1;
        const bool holds = tp == 1 || (at >= s.offset[dim] && at < s.offset[dim] + s.count[dim]);
        if (holds) {
          expect_model_error([&] { r.read(s); },
                             {"model file " + path + ": tensor " + fc.name + ": " + fc.where +
                                  " fails its checksum (stored xxh3 ",
                              "the file is corrupt; reconvert or copy it again"});
        } else {
          EXPECT_EQ(r.read(s), random_tensor_values(c, s, seed))
              << fc.name << " tp " << tp << " rank " << rank;
        }
      }
    }
    // Another tensor of the same file reads fine.
    const TensorShard norm = full_shard({"model.norm.weight", {64}});
    EXPECT_EQ(r.read(norm), random_tensor_values(c, norm, seed));
    fs::remove(path);
  }
}

// A hyperslab that does not start or end on tile boundaries (the vocab slice of
// 50 rows at TP 2 against tiles of 13 rows, or any row/column window) is read
// through the whole tiles it touches: a flip in a row outside the hyperslab
// but inside a tile it shares fails too.
TEST(WeightChecksums, MisalignedHyperslabsAreVerifiedByWholeTiles) {
  const ModelConfig c = small_config(DType::f16);
  const uint64_t seed = 8;
  const std::string path = tmp_file();
  write_random_model(c, path, seed);
  const std::string embed = "model.embed_tokens.weight";  // [99, 64]: tiles 13 x 4
  const TensorSpec spec{embed, {99, 64}};
  {
    WeightReader r(path);
    for (int tp : {2, 4}) {
      for (int rank = 0; rank < tp; ++rank) {
        const TensorShard s = shard_of(c, spec, rank, tp);
        EXPECT_EQ(r.read(s), random_tensor_values(c, s, seed)) << "tp " << tp << " rank " << rank;
      }
    }
    const TensorShard window{embed, {99, 64}, {14, 5}, {30, 22}};
    const std::vector<float> full = random_tensor_values(c, full_shard(spec), seed);
    EXPECT_EQ(r.read(window), slice_2d(full, 64, 14, 30, 5, 22));
  }
  // Row 51 is rank 1's at TP 2 (rows 50-98) but in tile row 3 (rows 39-51),
  // which rank 0 (rows 0-49) reads too.
  flip_byte(path, element_offset(path, embed, 51 * 64 + 2));
  WeightReader r(path);
  const std::string tile = "tile (3, 0) (rows 39-51, cols 0-3) fails its checksum";
  expect_model_error([&] { r.read(shard_of(c, spec, 0, 2)); }, {embed, tile});
  expect_model_error([&] { r.read(shard_of(c, spec, 1, 2)); }, {embed, tile});
  // A window whose columns stop short of the flipped column, in the same tile.
  expect_model_error([&] { r.read({embed, {99, 64}, {40, 0}, {3, 2}}); }, {embed, tile});
  // Rows 0-38 do not touch tile row 3.
  const TensorShard clean{embed, {99, 64}, {0, 0}, {39, 64}};
  EXPECT_EQ(r.read(clean), random_tensor_values(c, clean, seed));
  fs::remove(path);
}

// fp32 storage and vectors: the flip is found in the one-read fp32 path, in a
// vector, and in a bias.
TEST(WeightChecksums, Fp32TensorsAndVectorsAreVerified) {
  const ModelConfig c = small_config(DType::f32);
  const std::string path = tmp_file();
  write_random_model(c, path, 3);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";    // [64, 64]: tiles 4 x 4
  const std::string norm = "model.layers.1.input_layernorm.weight";  // [64]: tiles of 4
  flip_byte(path, element_offset(path, q, 5 * 64 + 6));
  flip_byte(path, element_offset(path, norm, 33));
  WeightReader r(path);
  expect_model_error(
      [&] {
        r.read(shard_of(c, {q, {64, 64}}, 0, 2));
      },
      {q, "tile (1, 1) (rows 4-7, cols 4-7) fails its checksum"});
  expect_model_error(
      [&] {
        r.read(full_shard({norm, {64}}));
      },
      {norm, "tile 8 (elements 32-35) fails its checksum"});
  expect_model_error([&] { r.read({norm, {64}, {34}, {1}}); }, {norm, "tile 8 "});
  EXPECT_EQ(r.read({norm, {64}, {36}, {4}}), random_tensor_values(c, {norm, {64}, {36}, {4}}, 3));
  fs::remove(path);
}

// A file written before checksums (simulated by deleting them) loads with one
// warning line per file and process, and nothing is verified: the flipped
// byte comes through as a different value. Its fingerprint is the whole file's.
TEST(WeightChecksums, AFileWithoutChecksumsLoadsUnverifiedWithOneWarning) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  write_random_model(c, path, 4);
  strip_checksums(path);
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  const TensorShard s = full_shard({up, {128, 64}});
  flip_byte(path, element_offset(path, up, 300));
  ::testing::internal::CaptureStderr();
  {
    WeightReader r(path);
    r.validate(2);
    EXPECT_FALSE(r.has_checksums());
    const std::vector<float> got = r.read(s), want = random_tensor_values(c, s, 4);
    EXPECT_NE(got[300], want[300]);
    EXPECT_EQ(got[301], want[301]);
    EXPECT_EQ(r.fingerprint(), file_fingerprint(path));
    WeightReader again(path);  // the same file again: no second line
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "tpinfer: warning: model file " + path +
                     " has no checksums (it was written before tpinfer stored them): its weights "
                     "load unverified; write it again with tpinfer convert or make-model to have "
                     "every read checked\n");
  fs::remove(path);
}

// Without checksums (or with verification off) the reader still refuses
// non-finite weights: 0xff bytes are NaN in every dtype.
TEST(WeightChecksums, NonFiniteValuesWithoutChecksums) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  write_random_model(c, path, 4);
  const std::string up = "model.layers.0.mlp.up_proj.weight";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(element_offset(path, up, 130)));
    f.write("\xff\xff\xff\xff", 4);
  }
  const TensorShard s = full_shard({up, {128, 64}});
  expect_model_error([&] { WeightReader(path, false).read(s); },
                     {path + ": tensor " + up +
                      " holds 2 non-finite value(s), the first at "
                      "element 130 of the shard"});
  std::vector<uint16_t> bits(static_cast<size_t>(s.numel()));
  expect_model_error([&] { WeightReader(path, false).read_into(s, DType::bf16, bits.data()); },
                     {path + ": tensor " + up +
                      " holds 2 non-finite value(s), the first at "
                      "element 130 of the shard"});
  expect_model_error([&] { WeightReader(path).read(s); }, {up, "tile (", "fails its checksum"});
  strip_checksums(path);
  expect_model_error([&] { WeightReader(path).read(s); }, {up, "non-finite", "element 130"});
  fs::remove(path);
}

// verify=false (--verify-weights off) reads without checking, saying so once.
TEST(WeightChecksums, VerificationOffReadsWithoutChecking) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  write_random_model(c, path, 4);
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  const TensorShard s = full_shard({up, {128, 64}});
  flip_byte(path, element_offset(path, up, 300));
  ::testing::internal::CaptureStderr();
  {
    WeightReader r(path, /*verify=*/false);
    EXPECT_TRUE(r.has_checksums());
    EXPECT_NE(r.read(s)[300], random_tensor_values(c, s, 4)[300]);
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("checksum verification is off"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  expect_model_error([&] { WeightReader(path).read(s); }, {up, "fails its checksum"});
  fs::remove(path);
}

TEST(WeightChecksums, ConfigAndTokenizerChecksums) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string path = tmp_file();
  write_random_model(c, path, 2, "{\"tokenizer\": \"bytes\"}");
  EXPECT_EQ(WeightReader(path).tokenizer_json(), "{\"tokenizer\": \"bytes\"}");
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ds = H5Dopen2(f, "tokenizer", H5P_DEFAULT);
  const uint64_t tok = H5Dget_offset(ds);
  H5Dclose(ds);
  H5Fclose(f);
  flip_byte(path, tok + 3);
  {
    WeightReader r(path);
    EXPECT_TRUE(r.has_tokenizer());
    expect_model_error(
        [&] { r.tokenizer_json(); },
        {"model file " + path + ": the tokenizer (22 bytes) fails its checksum", "reconvert"});
  }
  // A config that is still valid JSON and a valid config, but not the one written.
  nlohmann::json j = config_to_json(c);
  j["rope_theta"] = 10000.0;
  const std::string edited = j.dump();
  edit_string_attr(path, "/", "config", &edited);
  expect_model_error(
      [&] { WeightReader r(path); },
      {"model file " + path + ": root attribute config fails its checksum", "the file is corrupt"});
  EXPECT_EQ(WeightReader(path, false).config().rope_theta, 10000.0);
  fs::remove(path);
}

// fingerprint() adds the stored hashes up without reading a weight: a tensor
// whose checksums were replaced (with its data: the splice of another file)
// reads clean, but the content hash no longer adds up. An unfinished file
// (content_hash never set) is refused.
TEST(WeightChecksums, FingerprintChecksThatTheHashesAddUp) {
  const ModelConfig c = small_config(DType::bf16);
  const std::string a = tmp_file("_a"), b = tmp_file("_b");
  write_random_model(c, a, 1);
  write_random_model(c, b, 2);
  const std::string down = "model.layers.1.mlp.down_proj.weight";
  const TensorShard s = full_shard({down, {64, 128}});
  // Copy b's tensor (bytes and checksums) into a: a consistent tensor swap.
  {
    std::vector<char> bytes(64 * 128 * 2);
    std::ifstream in(b, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(element_offset(b, down, 0)));
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::fstream out(a, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(element_offset(a, down, 0)));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(in.good() && out.good());
    std::vector<uint64_t> hashes(256);
    const hid_t fb = H5Fopen(b.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t db = H5Dopen2(fb, down.c_str(), H5P_DEFAULT);
    const hid_t ab = H5Aopen(db, "tile_xxh3", H5P_DEFAULT);
    H5_OK(H5Aread(ab, H5T_NATIVE_UINT64, hashes.data()));
    H5Aclose(ab);
    H5Dclose(db);
    H5Fclose(fb);
    const hid_t fa = H5Fopen(a.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t da = H5Dopen2(fa, down.c_str(), H5P_DEFAULT);
    const hid_t aa = H5Aopen(da, "tile_xxh3", H5P_DEFAULT);
    H5_OK(H5Awrite(aa, H5T_NATIVE_UINT64, hashes.data()));
    H5Aclose(aa);
    H5Dclose(da);
    H5Fclose(fa);
  }
  WeightReader r(a);
  EXPECT_EQ(r.read(s), random_tensor_values(c, s, 2));  // b's values, and they verify
  expect_model_error([&] { r.fingerprint(); },
                     {"model file " + a +
                          ": its parts' checksums do not add up to its "
                          "content_hash",
                      "the file is corrupt or was changed after it was written"});
  expect_model_error([&] { model_fingerprint(a); }, {a, "do not add up"});

  const std::string unset(32, '0');
  edit_string_attr(b, "/", "content_hash", &unset);
  expect_model_error([&] { WeightReader r(b); },
                     {"model file " + b + " was not completely written", "content_hash"});
  fs::remove(a);
  fs::remove(b);
}

// Tensors of other ranks than 1 and 2, and an empty one, round-trip with
// checksums (the format's models have none, but the writer accepts them).
TEST(WeightChecksums, ScalarsHigherRanksAndEmptyTensors) {
  const std::string path = tmp_file();
  std::vector<float> cube(4 * 6 * 10);
  for (size_t i = 0; i < cube.size(); ++i) cube[i] = static_cast<float>(i % 97) - 40.0f;
  const float one = 2.5f;
  {
    WeightWriter w(path, small_config(DType::bf16));
    w.write("cube", {4, 6, 10}, cube.data());
    w.write("scalar", {}, &one);
    w.write("empty", {0, 5}, nullptr);
    w.close();
  }
  WeightReader r(path);
  EXPECT_EQ(r.read({"cube", {4, 6, 10}, {0, 0, 0}, {4, 6, 10}}), cube);
  std::vector<float> part;
  for (int i = 1; i < 3; ++i)
    for (int j = 2; j < 5; ++j)
      for (int k = 3; k < 7; ++k) part.push_back(cube[(i * 6 + j) * 10 + k]);
  EXPECT_EQ(r.read({"cube", {4, 6, 10}, {1, 2, 3}, {2, 3, 4}}), part);
  EXPECT_EQ(r.read({"scalar", {}, {}, {}}), std::vector<float>{2.5f});
  EXPECT_EQ(r.read({"empty", {0, 5}, {0, 0}, {0, 5}}), std::vector<float>{});
  // The same as stored bf16 bits (the cube's values are exact in bf16).
  std::vector<uint16_t> bits(part.size());
  r.read_into({"cube", {4, 6, 10}, {1, 2, 3}, {2, 3, 4}}, DType::bf16, bits.data());
  for (size_t i = 0; i < bits.size(); ++i) EXPECT_EQ(bf16_to_float(bits[i]), part[i]) << i;
  uint16_t scalar_bits = 0;
  r.read_into({"scalar", {}, {}, {}}, DType::bf16, &scalar_bits);
  EXPECT_EQ(bf16_to_float(scalar_bits), 2.5f);
  r.read_into({"empty", {0, 5}, {0, 0}, {0, 5}}, DType::bf16, nullptr);
  EXPECT_NE(r.fingerprint(), "");
  flip_byte(path, element_offset(path, "cube", 2 * 60 + 0));
  expect_model_error(
      [&] {
        r.read({"cube", {4, 6, 10}, {2, 0, 0}, {1, 1, 1}});
      },
      {"cube", "tile (2, 0)", "fails its checksum"});
  EXPECT_EQ(r.read({"cube", {4, 6, 10}, {0, 0, 0}, {2, 6, 10}}),
            std::vector<float>(cube.begin(), cube.begin() + 120));
  fs::remove(path);
}

}  // namespace
}  // namespace tpinfer
