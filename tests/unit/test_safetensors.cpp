// The safetensors reader: every float dtype read back exactly, reads that span
// several I/O blocks, and one clear error line naming the file (and tensor)
// for each kind of bad or truncated file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "model_error_matchers.hpp"
#include "safetensors_writer.hpp"
#include "weights/safetensors.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using namespace test;

std::string tmp_file(const std::string& suffix = "") {
  fs::create_directories(TPINFER_TEST_TMP);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(TPINFER_TEST_TMP) + "/st_" + info->test_suite_name() + "_" + info->name() +
         suffix + ".safetensors";
}

// Values that exercise rounding: subnormals, ties, large, signed zero, inf.
std::vector<float> tricky_values(size_t n) {
  std::vector<float> v = {0.0f,     -0.0f,       1.0f,
                          -2.5f,    1e-40f,      3.0e38f,
                          65504.0f, 1.00390625f, std::numeric_limits<float>::infinity(),
                          0.1f,     -1e-8f,      123.456f};
  for (size_t i = v.size(); i < n; ++i) v.push_back(std::sin(static_cast<float>(i)) * 3.0f);
  v.resize(n);
  return v;
}

TEST(Safetensors, ReadsEveryFloatDtypeExactly) {
  const std::vector<float> v = tricky_values(24);
  const std::vector<StTensor> tensors = {
      st_tensor("a.f32", "F32", {4, 6}, v),     st_tensor("b.bf16", "BF16", {24}, v),
      st_tensor("c.f16", "F16", {2, 3, 4}, v),  st_tensor("d.f64", "F64", {6, 4}, v),
      st_tensor("e.scalar", "F32", {}, {7.5f}), st_tensor("f.empty", "BF16", {0, 5}, {})};
  const std::string path = tmp_file();
  write_bytes(path, st_image(tensors, {{"format", "pt"}, {"note", "x"}}));

  const SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "x");
  EXPECT_EQ(f.find("missing"), nullptr);
  for (size_t i = 1; i < f.tensors().size(); ++i)  // in data order
    EXPECT_LE(f.tensors()[i - 1].end, f.tensors()[i].begin);
  for (const StTensor& want : tensors) {
    const SafetensorsTensor* t = f.find(want.name);
    ASSERT_NE(t, nullptr) << want.name;
    EXPECT_EQ(t->dtype, want.dtype);
    EXPECT_EQ(t->shape, want.shape);
    std::vector<float> got(static_cast<size_t>(t->numel()), -1.0f);
    f.read_f32(*t, got.data());
    const size_t n = got.size();
    for (size_t k = 0; k < n; ++k) {
      const float expected = want.name == "e.scalar" ? 7.5f : st_round(want.dtype, v[k]);
      EXPECT_EQ(bits_of(got[k]), bits_of(expected)) << want.name << "[" << k << "]";
    }
  }
}

TEST(Safetensors, ReadsTensorsLargerThanOneIoBlock) {
  // 16 MiB blocks: 9M bf16 values take two blocks, 5M f64 values three.
  const size_t n = 9'000'000;
  std::vector<float> v(n);
  // At most 7 significant bits, so bf16 holds every value exactly.
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<int>(i % 251) - 125) / 4;
  const std::vector<float> v64(v.begin(), v.begin() + 5'000'000);
  const std::string path = tmp_file();
  write_bytes(path, st_image({st_tensor("big", "BF16", {3000, 3000}, v),
                              st_tensor("big64", "F64", {5'000'000}, v64)}));
  const SafetensorsFile f(path);
  std::vector<float> got(n);
  f.read_f32(*f.find("big"), got.data());
  for (size_t i = 0; i < n; ++i)
    if (got[i] != v[i]) FAIL() << "bf16 element " << i << ": " << got[i] << " != " << v[i];
  got.assign(v64.size(), 0.0f);
  f.read_f32(*f.find("big64"), got.data());
  EXPECT_EQ(got, v64);
  fs::remove(path);
}

TEST(Safetensors, MissingFileAndShortFile) {
  expect_model_error([] { SafetensorsFile f("/nonexistent/x.safetensors"); },
                     {"cannot open safetensors file /nonexistent/x.safetensors", "No such file"});
  const std::string path = tmp_file();
  write_bytes(path, "abc");
  expect_model_error([&] { SafetensorsFile f(path); },
                     {path, "truncated: 3 bytes", "8-byte header length"});
}

TEST(Safetensors, HeaderLengthBeyondTheFileOrTheLimit) {
  const std::string good = st_image({st_tensor("w", "F32", {2}, {1, 2})});
  const std::string path = tmp_file();
  std::string bad = good;
  const uint64_t past = good.size();  // more than the bytes after the length
  std::memcpy(bad.data(), &past, 8);
  write_bytes(path, bad);
  expect_model_error(
      [&] { SafetensorsFile f(path); },
      {path, "header length " + std::to_string(past), "runs past the end of the file"});
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(bad.data(), &huge, 8);
  write_bytes(path, bad);
  expect_model_error([&] { SafetensorsFile f(path); },
                     {path, "header length 1099511627776", "limit of 100000000 bytes"});
}

TEST(Safetensors, BadJson) {
  const std::string path = tmp_file();
  write_bytes(path, st_raw("{\"w\": {\"dtype\": \"F32\",", "12345678"));
  expect_model_error([&] { SafetensorsFile f(path); }, {path, "header is not valid JSON"});
  write_bytes(path, st_raw("[1, 2]", ""));
  expect_model_error([&] { SafetensorsFile f(path); }, {path, "header is not a JSON object"});
}

TEST(Safetensors, BadEntries) {
  const std::string path = tmp_file();
  auto check = [&](const std::string& header, const std::string& data,
                   const std::vector<std::string>& parts) {
    write_bytes(path, st_raw(header, data));
    std::vector<std::string> all = {path};
    all.insert(all.end(), parts.begin(), parts.end());
    expect_model_error([&] { SafetensorsFile f(path); }, all);
  };
  const std::string d8(8, '\0');
  check(R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", d8,
        {"tensor w has unknown dtype 'Q4'"});
  check(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", d8,
        {"tensor w", "non-negative integers"});
  check(R"({"w": {"dtype": "F32", "shape": [2]}})", d8, {"tensor w", "no 'data_offsets'"});
  check(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", d8,
        {"tensor w", "end before they begin"});
  check(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", d8,
        {"tensor w", "hold 8 bytes", "shape [3] of F32 needs 12"});
  check(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", d8,
        {"tensor w", "run past the end of the data section (8 bytes)", "truncated"});
  check(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
        d8, {"tensors a and b overlap", "[0, 8] and [4, 8]"});
  check(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", d8,
        {"bytes [0, 4)", "belong to no tensor"});
  check(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", d8,
        {"tensors end at 4", "no trailing bytes"});
  check(
      R"({"__metadata__": {"n": 3}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
      d8, {"__metadata__ entry 'n' is not a string"});
  check(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", d8,
        {"tensor w", "too large"});
}

TEST(Safetensors, TruncatedFileNamesTheTensorCut) {
  const std::string image = st_image({st_tensor("first", "F32", {4}, {1, 2, 3, 4}),
                                      st_tensor("last", "BF16", {8}, {1, 2, 3, 4, 5, 6, 7, 8})});
  const std::string path = tmp_file();
  write_bytes(path, image.substr(0, image.size() - 5));
  expect_model_error([&] { SafetensorsFile f(path); },
                     {path, "tensor last", "run past the end of the data section", "truncated"});
}

TEST(Safetensors, NonFloatTensorsValidateButDoNotConvert) {
  StTensor ids{"ids", "I64", {2}, std::string(16, '\1')};
  const std::string path = tmp_file();
  write_bytes(path, st_image({ids, st_tensor("w", "F32", {1}, {1})}));
  const SafetensorsFile f(path);
  std::vector<float> out(2);
  expect_model_error([&] { f.read_f32(*f.find("ids"), out.data()); },
                     {path, "tensor ids has dtype I64", "cannot be converted"});
}

TEST(Safetensors, AFileThatShrankAfterOpeningFailsTheRead) {
  const std::string path = tmp_file();
  write_bytes(path, st_image({st_tensor("w", "F32", {1000}, std::vector<float>(1000, 1.0f))}));
  const SafetensorsFile f(path);
  fs::resize_file(path, fs::file_size(path) - 100);
  std::vector<float> out(1000);
  expect_model_error([&] { f.read_f32(*f.find("w"), out.data()); },
                     {path, "unexpected end of file reading tensor w"});
}

TEST(Safetensors, MovedFilesKeepTheirTensors) {
  const std::string path = tmp_file();
  write_bytes(path, st_image({st_tensor("w", "F16", {3}, {1, 2, 3})}));
  SafetensorsFile a(path);
  const SafetensorsTensor* t = a.find("w");
  std::vector<SafetensorsFile> files;
  files.push_back(std::move(a));
  std::vector<float> out(3);
  files[0].read_f32(*t, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3}));
}

}  // namespace
}  // namespace tpinfer
