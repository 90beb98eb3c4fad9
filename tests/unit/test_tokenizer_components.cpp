// Each tokenizer component alone, with expected values written by hand (the
// Split behaviours are Hugging Face's documented example), and a few small
// whole tokenizers for the options that only show in ids (added-token
// options, BPE prefix/suffix and unk, post-processor templates).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "text/decoders.hpp"
#include "text/normalizers.hpp"
#include "text/pre_tokenizers.hpp"
#include "text/tokenizer.hpp"

using nlohmann::json;
using tpinfer::Tokenizer;
namespace td = tpinfer::tokenizer_detail;

namespace {

using Pieces = std::vector<std::string>;

Pieces pre_tokenize(const json& spec, const std::string& text, bool at_origin = true) {
  const td::PreTokenizers p = td::PreTokenizers::from_json(spec);
  td::PreTokenArena arena;
  std::vector<td::PreToken> pieces{{text, at_origin}}, scratch;
  p.run(pieces, scratch, arena);
  Pieces out;
  for (const auto& x : pieces) out.emplace_back(x.text);
  return out;
}

json split(const json& pattern, const char* behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

std::string normalize(const json& spec, const std::string& text) {
  return td::Normalizers::from_json(spec).run(text);
}

// Decodes token strings through a decoder spec, all at once and one by one.
std::string decode(const json& spec, const Pieces& tokens) {
  td::Decoders d = td::Decoders::from_json(spec);
  d.prepare(tokens);
  td::Decoders::Stream s(d);
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) s.push(d.prepared(static_cast<int32_t>(i)), out);
  s.finish(out);
  return out;
}

// A char-level BPE tokenizer over `chars` (ids in order), no merges unless given.
json char_tokenizer(const std::string& chars) {
  json vocab = json::object();
  int id = 0;
  for (char c : chars) vocab[std::string(1, c)] = id++;
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
          {"decoder", {{"type", "Fuse"}}}};
}

std::string model_error(const json& j) {
  try {
    Tokenizer::from_json(j.dump());
  } catch (const tpinfer::ModelError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(TokenizerComponents, SplitBehaviours) {
  const json dash = {{"String", "-"}};
  const std::string t = "the-final--countdown";
  EXPECT_EQ(pre_tokenize(split(dash, "Removed"), t), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(pre_tokenize(split(dash, "Isolated"), t),
            (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenize(split(dash, "MergedWithPrevious"), t),
            (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenize(split(dash, "MergedWithNext"), t),
            (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pre_tokenize(split(dash, "Contiguous"), t),
            (Pieces{"the", "-", "final", "--", "countdown"}));
  // invert: the matches are what is kept (GPT-4o's form of its split).
  EXPECT_EQ(pre_tokenize(split({{"Regex", "\\d+"}}, "Removed", true), "ab12cd3"),
            (Pieces{"12", "3"}));
  EXPECT_EQ(pre_tokenize(split({{"Regex", "\\d+"}}, "Isolated", true), "ab12cd3"),
            (Pieces{"ab", "12", "cd", "3"}));
  // \s is White_Space, as Oniguruma has it: U+180E is not a space, U+3000 is.
  EXPECT_EQ(pre_tokenize(split({{"Regex", "\\s+"}}, "Removed"),
                         "a\xE1\xA0\x8E"
                         "b\xE3\x80\x80"
                         "c"),
            (Pieces{"a\xE1\xA0\x8E"
                    "b",
                    "c"}));
  // Lookahead, case-insensitive groups and Unicode classes (Llama 3's pattern).
  const json llama3 = {{"Regex",
                        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}};
  EXPECT_EQ(pre_tokenize(split(llama3, "Isolated"), "I'M 12345  ok\n\nx"),
            (Pieces{"I", "'M", " ", "123", "45", " ", " ok", "\n\n", "x"}));
}

TEST(TokenizerComponents, MetaspaceSchemes) {
  auto ms = [](const char* scheme, bool split) {
    return json{{"type", "Metaspace"},
                {"replacement", "\xE2\x96\x81"},
                {"prepend_scheme", scheme},
                {"split", split}};
  };
  const std::string u = "\xE2\x96\x81";
  EXPECT_EQ(pre_tokenize(ms("always", true), "Hey friend"), (Pieces{u + "Hey", u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("always", true), "Hey   friend"),
            (Pieces{u + "Hey", u, u, u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("never", true), "Hey friend"), (Pieces{"Hey", u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("first", true), "Hey friend", true), (Pieces{u + "Hey", u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("first", true), "Hey friend", false), (Pieces{"Hey", u + "friend"}));
  EXPECT_EQ(pre_tokenize(ms("always", false), "Hey friend"), (Pieces{u + "Hey" + u + "friend"}));
}

TEST(TokenizerComponents, ByteLevelDigitsPunctuationWhitespace) {
  json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}};
  EXPECT_EQ(pre_tokenize(bl, "hello world"), (Pieces{" hello", " world"}));
  bl["add_prefix_space"] = false;
  EXPECT_EQ(pre_tokenize(bl, "hello world"), (Pieces{"hello", " world"}));
  bl["use_regex"] = false;
  EXPECT_EQ(pre_tokenize(bl, "hello world"), (Pieces{"hello world"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "a123b"),
            (Pieces{"a", "1", "2", "3", "b"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "a123b"),
            (Pieces{"a", "123", "b"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}}, "Hey, you!"),
            (Pieces{"Hey", ",", " you", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hey friend!  x_y"),
            (Pieces{"Hey", "friend", "!", "x_y"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, "a  b\tc "), (Pieces{"a", "b", "c"}));
  // Sequence: each step splits the pieces of the one before.
  EXPECT_EQ(
      pre_tokenize(
          {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}},
          "x12 y"),
      (Pieces{"x", "1", "2", "y"}));
  // A ByteLevel must come last: the model reads its pieces as bytes.
  EXPECT_THROW(
      pre_tokenize({{"type", "Sequence"}, {"pretokenizers", {bl, {{"type", "WhitespaceSplit"}}}}},
                   "x"),
      tpinfer::ModelError);
}

TEST(TokenizerComponents, Normalizers) {
  // NFKC folds compatibility characters; NFKD also decomposes; NFD only decomposes.
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\xEF\xAC\x81 \xE2\x91\xA0 \xC3\xA9"),
            "fi 1 \xC3\xA9");  // ﬁ ① é
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\xEF\xAC\x81\xC3\xA9"), "fie\xCC\x81");
  EXPECT_EQ(normalize({{"type", "NFD"}}, "\xEF\xAC\x81\xC3\xA9"),
            "\xEF\xAC\x81"
            "e\xCC\x81");
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\xCC\x81"), "\xC3\xA9");
  // Lowercase: full mappings (İ -> i + combining dot) and the final sigma.
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "HELLO \xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3 \xC4\xB0"),
            "hello \xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82 i\xCC\x87");
  EXPECT_EQ(
      normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, " \t a b \n"),
      "a b");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, " a "),
            " a");
  EXPECT_EQ(
      normalize({{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", "_"}}, "a  b c"),
      "a_b_c");
  EXPECT_EQ(normalize({{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", ">"}},
                         {{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "b"}}}}},
                      "aa"),
            ">bb");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", ">"}}, ""), "");
}

TEST(TokenizerComponents, Decoders) {
  const std::string u = "\xE2\x96\x81";
  json ms = {{"type", "Metaspace"}, {"replacement", u}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decode(ms, {u + "Hey", u + "friend"}), "Hey friend");
  ms["prepend_scheme"] = "never";
  EXPECT_EQ(decode(ms, {u + "Hey", u + "friend"}), " Hey friend");
  const json bf = {{"type", "ByteFallback"}};
  EXPECT_EQ(decode(bf, {"<0xE4>", "<0xB8>", "<0xAD>", "a"}),
            "\xE4\xB8\xAD"
            "a");
  // A run of byte tokens that is not UTF-8: one U+FFFD per byte token.
  EXPECT_EQ(decode(bf, {"<0x41>", "<0xFF>", "b"}),
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");
  // After Fuse, Strip and Replace see the one joined string.
  const json fuse_strip = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}}}};
  EXPECT_EQ(decode(fuse_strip, {" a", " ", "b ", " "}), "a b ");  // " a b  " less one each end
  const json fuse_replace = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Fuse"}},
        {{"type", "Replace"}, {"pattern", {{"String", "ab"}}}, {"content", "X"}}}}};
  EXPECT_EQ(decode(fuse_replace, {"a", "b", "a"}), "Xa");
  EXPECT_EQ(decode({{"type", "Replace"}, {"pattern", {{"String", "ab"}}}, {"content", "X"}},
                   {"a", "b", "ab"}),
            "abX");
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"Hello", "\xC4\xA0world"}), "Hello world");
  EXPECT_EQ(decode(json(), {"a", "b"}), "a b");  // no decoder: joined with spaces
}

TEST(TokenizerComponents, AddedTokenOptions) {
  json j = char_tokenizer("abc ");
  j["added_tokens"] = {{{"id", 4},
                        {"content", "<x>"},
                        {"special", true},
                        {"lstrip", true},
                        {"rstrip", true},
                        {"normalized", false},
                        {"single_word", false}},
                       {{"id", 5},
                        {"content", "ab"},
                        {"special", false},
                        {"lstrip", false},
                        {"rstrip", false},
                        {"normalized", false},
                        {"single_word", true}}};
  const Tokenizer tok = Tokenizer::from_json(j.dump());
  // lstrip/rstrip: the spaces around <x> belong to it.
  EXPECT_EQ(tok.encode("c <x> a"), (std::vector<int32_t>{2, 4, 0}));
  // single_word: "ab" only where no word character touches it.
  EXPECT_EQ(tok.encode("ab cab"), (std::vector<int32_t>{5, 3, 2, 0, 1}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{2, 4, 0}, true), "ca");
}

TEST(TokenizerComponents, BpeOptions) {
  json j = char_tokenizer("a");
  j["model"]["vocab"] = {{"a", 0}, {"##b</w>", 1}, {"ab</w>", 2}, {"<unk>", 3}};
  j["model"]["merges"] = json::array({json::array({"a", "##b</w>"})});  // [["a", "##b</w>"]]
  j["model"]["continuing_subword_prefix"] = "##";
  j["model"]["end_of_word_suffix"] = "</w>";
  j["model"]["unk_token"] = "<unk>";
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("xyz"), (std::vector<int32_t>{3}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(Tokenizer::from_json(j.dump()).encode("xyz"), (std::vector<int32_t>{3, 3, 3}));
  j["model"]["dropout"] = 0.1;
  EXPECT_NE(model_error(j).find("model.dropout"), std::string::npos);
}

TEST(TokenizerComponents, TemplateProcessing) {
  json j = char_tokenizer("ab");
  j["added_tokens"] = {{{"id", 2}, {"content", "<s>"}, {"special", true}},
                       {{"id", 3}, {"content", "</s>"}, {"special", true}}};
  j["post_processor"] = {{"type", "Sequence"},
                         {"processors",
                          {{{"type", "ByteLevel"}, {"trim_offsets", false}},
                           {{"type", "TemplateProcessing"},
                            {"single",
                             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                            {"special_tokens",
                             {{"<s>", {{"id", "<s>"}, {"ids", {2}}, {"tokens", {"<s>"}}}},
                              {"</s>", {{"id", "</s>"}, {"ids", {3}}, {"tokens", {"</s>"}}}}}}}}}};
  const Tokenizer tok = Tokenizer::from_json(j.dump());
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.encode("ab", true), (std::vector<int32_t>{2, 0, 1, 3}));
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{0, 1}));
  j["post_processor"] = {{"type", "NoSuchProcessor"}};
  EXPECT_NE(model_error(j).find("post_processor.type \"NoSuchProcessor\""), std::string::npos);
}
