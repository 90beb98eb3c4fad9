// NFC (src/text/unicode_nfc.cpp) on known cases, against Python's
// unicodedata.normalize over a generated corpus (tests/data/nfc/nfc_cases.txt,
// tools/gen_nfc_corpus.py), and through the tokenizer's NFC normalizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "text/tokenizer.hpp"
#include "text/tokenizer_unicode.hpp"
#include "text/unicode_nfc.hpp"

namespace fs = std::filesystem;
using tpinfer::Tokenizer;
using tpinfer::tokenizer_detail::append_utf8;
using tpinfer::tokenizer_detail::canonical_combining_class;
using tpinfer::tokenizer_detail::nfc;

namespace {

const fs::path kSourceRoot = fs::path(__FILE__).parent_path().parent_path().parent_path();

std::string utf8(std::initializer_list<uint32_t> cps) {
  std::string s;
  for (uint32_t cp : cps) append_utf8(s, cp);
  return s;
}

// "0041 0301" -> UTF-8
std::string from_hex(const std::string& field) {
  std::istringstream in(field);
  std::string s, h;
  while (in >> h) append_utf8(s, static_cast<uint32_t>(std::stoul(h, nullptr, 16)));
  return s;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Nfc, KnownCases) {
  // Composition: e + COMBINING ACUTE -> é.
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(nfc("caf" + utf8({'e', 0x301})), "caf\xC3\xA9");
  // Already composed text is left as it is.
  EXPECT_EQ(nfc("\xC3\xA9t\xC3\xA9"), "\xC3\xA9t\xC3\xA9");
  // Hangul L + V + T -> one syllable, L + V -> LV, LV + T -> LVT.
  EXPECT_EQ(nfc(utf8({0x1112, 0x1161, 0x11AB})), utf8({0xD55C}));
  EXPECT_EQ(nfc(utf8({0x1100, 0x1161})), utf8({0xAC00}));
  EXPECT_EQ(nfc(utf8({0xAC00, 0x11A8})), utf8({0xAC01}));
  // An LVT syllable takes no second T; a T alone stays a T.
  EXPECT_EQ(nfc(utf8({0xAC01, 0x11A8})), utf8({0xAC01, 0x11A8}));
  EXPECT_EQ(nfc(utf8({'a', 0x11A8})), utf8({'a', 0x11A8}));
  // Singletons decompose and never come back: ANGSTROM SIGN -> Å, OHM SIGN -> Ω.
  EXPECT_EQ(nfc(utf8({0x212B})), utf8({0x00C5}));
  EXPECT_EQ(nfc(utf8({0x2126})), utf8({0x03A9}));
  // Composition exclusions stay decomposed: DEVANAGARI LETTER QA -> KA + NUKTA,
  // and KA + NUKTA is not recomposed.
  EXPECT_EQ(nfc(utf8({0x0958})), utf8({0x0915, 0x093C}));
  EXPECT_EQ(nfc(utf8({0x0915, 0x093C})), utf8({0x0915, 0x093C}));
  // Non-starter decomposition: COMBINING GREEK DIALYTIKA TONOS -> 0308 0301.
  EXPECT_EQ(nfc(utf8({0x0344})), utf8({0x0308, 0x0301}));
  // Canonical ordering: a + circumflex (230) + dot below (220) is reordered to
  // dot below first, then both compose: ậ.
  EXPECT_EQ(nfc(utf8({'a', 0x0302, 0x0323})), utf8({0x1EAD}));
  EXPECT_EQ(nfc(utf8({'a', 0x0323, 0x0302})), utf8({0x1EAD}));
  // Blocked: a mark of the same class in between (overline, 230, composes with
  // nothing) blocks the acute; a starter in between blocks too.
  EXPECT_EQ(nfc(utf8({'a', 0x0305, 0x0301})), utf8({'a', 0x0305, 0x0301}));
  EXPECT_EQ(nfc(utf8({'e', 'x', 0x0301})), utf8({'e', 'x', 0x0301}));
  // ...but a mark of a lower class does not: e + dot below (220) + acute (230)
  // -> ẹ (1EB9) + acute (Unicode has no single ẹ́).
  EXPECT_EQ(nfc(utf8({'o', 0x0323, 0x0302})), utf8({0x1ED9}));
  EXPECT_EQ(nfc(utf8({'e', 0x0323, 0x0301})), utf8({0x1EB9, 0x0301}));
  // Leading combining marks have no starter to join.
  EXPECT_EQ(nfc(utf8({0x0301, 'e'})), utf8({0x0301, 'e'}));
  // Bytes that are not UTF-8 pass through unchanged and block composition.
  EXPECT_EQ(nfc(std::string("e\xFF\xCC\x81", 4)), std::string("e\xFF\xCC\x81", 4));
  EXPECT_EQ(nfc(std::string("\xC3", 1)), std::string("\xC3", 1));
  EXPECT_EQ(nfc(std::string("a\xCC", 2)), std::string("a\xCC", 2));
  // A real U+FFFD is a character like any other.
  EXPECT_EQ(nfc(utf8({0xFFFD, 0x301})), utf8({0xFFFD, 0x301}));
  EXPECT_EQ(nfc(""), "");
  EXPECT_EQ(nfc("plain ASCII\n"), "plain ASCII\n");
}

TEST(Nfc, CombiningClasses) {
  EXPECT_EQ(canonical_combining_class('a'), 0);
  EXPECT_EQ(canonical_combining_class(0x0301), 230);
  EXPECT_EQ(canonical_combining_class(0x0323), 220);
  EXPECT_EQ(canonical_combining_class(0x0334), 1);
  EXPECT_EQ(canonical_combining_class(0x093C), 7);
  EXPECT_EQ(canonical_combining_class(0x05B0), 10);
  EXPECT_EQ(canonical_combining_class(0x1D16D), 226);
  EXPECT_EQ(canonical_combining_class(0x10FFFF), 0);
}

// Every case of the corpus as Python's unicodedata normalizes it.
TEST(Nfc, MatchesPythonUnicodedataOnTheCorpus) {
  std::ifstream in(kSourceRoot / "tests" / "data" / "nfc" / "nfc_cases.txt");
  ASSERT_TRUE(in) << "tests/data/nfc/nfc_cases.txt is missing";
  std::string line;
  int cases = 0, changed = 0, failures = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t semi = line.find(';');
    ASSERT_NE(semi, std::string::npos) << line;
    const std::string input = from_hex(line.substr(0, semi));
    const std::string expected = from_hex(line.substr(semi + 1));
    ++cases;
    changed += input != expected;
    const std::string got = nfc(input);
    if (got != expected && ++failures <= 20) {
      ADD_FAILURE() << "NFC of " << line.substr(0, semi) << ": expected " << line.substr(semi + 1);
    }
    // NFC is idempotent.
    if (nfc(expected) != expected && ++failures <= 20) {
      ADD_FAILURE() << "NFC changes its own output " << line;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(cases, 4000);
  EXPECT_GT(changed, 2000);  // the corpus exercises composition, not only identity
}

// A tokenizer.json with an NFC normalizer encodes decomposed text as the composed one.
TEST(Nfc, TokenizerAppliesTheNfcNormalizer) {
  const fs::path data = kSourceRoot / "tests" / "data" / "tokenizer";
  const std::string decomposed = "caf" + utf8({'e', 0x301}) + " " + utf8({0x212B}) + "ngstr" +
                                 utf8({'o', 0x308}) + "m " + utf8({0x1112, 0x1161, 0x11AB});
  const std::string composed =
      "caf\xC3\xA9 " + utf8({0xC5}) + "ngstr" + utf8({0xF6}) + "m " + utf8({0xD55C});
  for (const char* name : {"tiny_gpt2", "tiny_llama2"}) {
    SCOPED_TRACE(name);
    nlohmann::json j = nlohmann::json::parse(slurp(data / (std::string(name) + ".tokenizer.json")));
    const Tokenizer plain = Tokenizer::from_json(j.dump());
    EXPECT_NE(plain.encode(decomposed), plain.encode(composed));  // the test can fail
    nlohmann::json nfc_norm = {{"type", "NFC"}};
    if (j["normalizer"].is_null()) {
      j["normalizer"] = nfc_norm;
    } else {
      // Qwen2 and Hugging Face's Llama 2 files: NFC first in a Sequence.
      nlohmann::json seq = j["normalizer"]["type"] == "Sequence"
                               ? j["normalizer"]["normalizers"]
                               : nlohmann::json::array({j["normalizer"]});
      seq.insert(seq.begin(), nfc_norm);
      j["normalizer"] = {{"type", "Sequence"}, {"normalizers", seq}};
    }
    const Tokenizer with_nfc = Tokenizer::from_json(j.dump());
    EXPECT_EQ(with_nfc.encode(decomposed), with_nfc.encode(composed));
    EXPECT_EQ(with_nfc.encode(composed), plain.encode(composed));
    EXPECT_EQ(with_nfc.decode(with_nfc.encode(decomposed)), plain.decode(plain.encode(composed)));
  }
}
