// The HDF5 weight store: bf16/fp16 conversions, seeded random models, write/read
// round trips of every TP shard, and one clear error line for each kind of bad file.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model_error_matchers.hpp"
#include "tpinfer/error.hpp"
#include "tpinfer/philox.hpp"
#include "tpinfer/sharding.hpp"
#include "tpinfer/weight_store.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using test::bits_of;
using test::expect_model_error;
using test::float_of;

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

INSTANTIATE_TEST_SUITE_P(AllDtypes, WeightStoreRoundTrip,
                         ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(WeightStore, ExplicitValuesRowAndColumnSlices) {
  for (DType d : {DType::f32, DType::bf16, DType::f16}) {
    const std::string path = tmp_file(dtype_name(d));
    const std::vector<float> t = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    // 65504 is fp16's largest finite value; 65520 would round to inf, which the
    // reader refuses (CorruptWeights tests in test_faults.cpp cover that).
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

}  // namespace
}  // namespace tpinfer
