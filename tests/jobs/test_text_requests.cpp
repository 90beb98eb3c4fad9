// Text requests end to end: text prompts through the model file's tokenizer
// (with Qwen2's NFC normalizer), stop strings (the job stops generating at the
// token that completes one, cuts "text" before it, the same on every layout),
// "logprobs" in the results, and stop strings on a model without a tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTokenizer =
    std::string(TPINFER_SOURCE_DIR) + "/tests/data/tokenizer/tiny_llama3.tokenizer.json";
constexpr const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 600, "max_position_embeddings": 256,
    "eos_token_id": 557, "torch_dtype": "float32"})";
const std::vector<std::string> kPrompts = {
    "Hello world, tokenizers!", "The quick brown fox", "Once upon a time",
    "caf\xC3\xA9 au lait",      "1 2 3 4 5",           "Stop strings are matched on text"};
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

class TextJobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::create_directories(TPINFER_TEST_TMP);
    // Qwen2-style: byte-level BPE behind an NFC normalizer.
    std::ifstream f(kTokenizer);
    json tok = json::parse(f);
    tok["normalizer"] = {{"type", "NFC"}};
    std::ofstream(tmp_path("text-nfc.tokenizer.json")) << tok.dump();
    model_ = make_random_model("text-req", kConfig, 5, tmp_path("text-nfc.tokenizer.json"));
    ASSERT_FALSE(model_.empty());
  }

  static std::map<std::string, json> run(const std::vector<json>& requests, const std::string& tag,
                                         int np = 1, int tp = 1,
                                         const std::string& model = model_) {
    const std::string in = tmp_path("text-req-" + tag + ".jsonl"),
                      out = tmp_path("text-req-" + tag + "-out.jsonl");
    {
      std::ofstream f(in);
      for (const json& j : requests) f << j.dump() << "\n";
    }
    fs::remove(out);
    auto r = mpirun_tpinfer(np, "run --model " + model + " --input " + in + " --output " + out +
                                    " --tp " + std::to_string(tp));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return results_by_id(out);
  }

  // What `tpinfer tokenize --decode --skip-special` makes of the tokens the
  // tokenizer has (the model's vocab is padded past it).
  static std::string decode(const json& tokens) {
    json known = json::array();
    for (const auto& t : tokens)
      if (t.get<int>() < 559) known.push_back(t);
    auto r = run_shell("echo '" + known.dump() + "' | " + TPINFER_BIN +
                       " tokenize --decode --skip-special --model " + model_);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output).get<std::string>();
  }

  static std::vector<json> requests(int max_new) {
    std::vector<json> out;
    for (size_t i = 0; i < kPrompts.size(); ++i)
      out.push_back({{"id", "p" + std::to_string(i)},
                     {"prompt", kPrompts[i]},
                     {"max_new_tokens", max_new},
                     {"ignore_eos", true},
                     {"logprobs", i % 2 == 0}});
    return out;
  }

  // Without stop strings, every result's text is the decode of its tokens.
  static const std::map<std::string, json>& plain() {
    static const std::map<std::string, json> results = run(requests(24), "plain");
    return results;
  }

  // A stop string for each result: two or three characters from the middle of
  // its text (no U+FFFD: its place depends on bytes still to come).
  static std::map<std::string, std::string> stop_strings() {
    std::map<std::string, std::string> out;
    for (const auto& [id, r] : plain()) {
      const std::string text = r["text"].get<std::string>();
      std::vector<size_t> starts;  // character boundaries
      for (size_t i = 0; i < text.size(); ++i)
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) starts.push_back(i);
      starts.push_back(text.size());
      for (size_t k = starts.size() / 2; k + 3 < starts.size(); ++k) {
        const std::string s = text.substr(starts[k], starts[k + 2 + k % 2] - starts[k]);
        if (s.find(kReplacement) == std::string::npos) {
          out[id] = s;
          break;
        }
      }
    }
    return out;
  }

  static std::vector<json> with_stops(const std::map<std::string, std::string>& stops) {
    std::vector<json> reqs = requests(24);
    for (json& j : reqs) {
      const std::string id = j["id"].dump();
      if (stops.count(id))
        j["stop"] = json::array({stops.at(id), "never in the text \xE2\x9C\x93"});
    }
    return reqs;
  }

  static std::string model_;
};
std::string TextJobs::model_;

TEST_F(TextJobs, TextIsTheDecodeOfTheTokensAndNfcAppliesToPrompts) {
  const auto& res = plain();
  ASSERT_EQ(res.size(), kPrompts.size());
  for (const auto& [id, r] : res) {
    EXPECT_EQ(r["finish_reason"], "length") << r.dump();
    EXPECT_EQ(r["completion_tokens"], 24) << r.dump();
    EXPECT_EQ(r["text"], decode(r["tokens"])) << r.dump();
  }
  // "café" written decomposed (e + U+0301) is the same prompt after NFC.
  const auto nfc = run({{{"id", "composed"},
                         {"prompt", "caf\xC3\xA9 au lait"},
                         {"max_new_tokens", 8},
                         {"ignore_eos", true}},
                        {{"id", "decomposed"},
                         {"prompt", "cafe\xCC\x81 au lait"},
                         {"max_new_tokens", 8},
                         {"ignore_eos", true}}},
                       "nfc");
  ASSERT_EQ(nfc.size(), 2u);
  EXPECT_EQ(nfc.at("\"composed\"")["prompt_tokens"], nfc.at("\"decomposed\"")["prompt_tokens"]);
  EXPECT_EQ(nfc.at("\"composed\"")["tokens"], nfc.at("\"decomposed\"")["tokens"]);
  EXPECT_EQ(nfc.at("\"composed\"")["tokens"],
            json(std::vector<json>(res.at("\"p3\"")["tokens"].begin(),
                                   res.at("\"p3\"")["tokens"].begin() + 8)));
}

TEST_F(TextJobs, LogprobsComeWithTheTokensAskingForThem) {
  for (const auto& [id, r] : plain()) {
    const int i = std::stoi(id.substr(2));
    if (i % 2 == 0) {
      ASSERT_TRUE(r.contains("logprobs")) << r.dump();
      ASSERT_EQ(r["logprobs"].size(), r["tokens"].size()) << r.dump();
      for (const auto& lp : r["logprobs"]) EXPECT_LE(lp.get<double>(), 0.0) << r.dump();
    } else {
      EXPECT_FALSE(r.contains("logprobs")) << r.dump();
    }
  }
}

TEST_F(TextJobs, StopStringsEndGenerationAndAreCutFromTheText) {
  const auto stops = stop_strings();
  ASSERT_GE(stops.size(), 4u);
  const auto got = run(with_stops(stops), "stop");
  ASSERT_EQ(got.size(), kPrompts.size());
  int shorter = 0;
  for (const auto& [id, r] : got) {
    const json& before = plain().at(id);
    if (!stops.count(id)) continue;
    const std::string stop = stops.at(id), full = before["text"].get<std::string>();
    SCOPED_TRACE(id + " stop " + json(stop).dump() + " in " + json(full).dump());
    EXPECT_EQ(r["finish_reason"], "stop");
    // The text before the first occurrence of the stop string...
    EXPECT_EQ(r["text"], full.substr(0, full.find(stop)));
    // ...from tokens that are the uninterrupted run's, up to and including the
    // token that completed the stop string (kept, as vLLM keeps it).
    const json& tokens = r["tokens"];
    ASSERT_LE(tokens.size(), before["tokens"].size());
    EXPECT_EQ(tokens, json(std::vector<json>(before["tokens"].begin(),
                                             before["tokens"].begin() + tokens.size())));
    EXPECT_EQ(r["completion_tokens"], tokens.size());
    const std::string decoded = decode(tokens);
    EXPECT_NE(decoded.find(stop), std::string::npos) << decoded;
    // ...and not one token more: without its last token, no stop string yet.
    json fewer = tokens;
    fewer.erase(fewer.end() - 1);
    EXPECT_EQ(decode(fewer).find(stop), std::string::npos);
    shorter += tokens.size() < before["tokens"].size();
    if (r.contains("logprobs")) {
      EXPECT_EQ(r["logprobs"].size(), tokens.size());
    }
  }
  EXPECT_GE(shorter, 3);  // generation really stopped early
}

TEST_F(TextJobs, StopStringsGiveTheSameResultsOnEveryLayout) {
  const auto stops = stop_strings();
  const auto one = run(with_stops(stops), "stop-np1");
  const auto tp2 = run(with_stops(stops), "stop-tp2", 2, 2);
  const auto dp2 = run(with_stops(stops), "stop-dp2", 2, 1);
  ASSERT_EQ(one.size(), kPrompts.size());
  for (const auto* other : {&tp2, &dp2}) {
    ASSERT_EQ(other->size(), one.size());
    for (const auto& [id, r] : one) {
      EXPECT_EQ(other->at(id)["tokens"], r["tokens"]) << id;
      EXPECT_EQ(other->at(id)["text"], r["text"]) << id;
      EXPECT_EQ(other->at(id)["finish_reason"], r["finish_reason"]) << id;
    }
  }
}

TEST_F(TextJobs, StopStringsWithoutATokenizerAreAPerLineError) {
  const std::string bare = tmp_path("text-req-bare.h5");
  auto made = tpinfer_cli("make-model --config " + tmp_path("text-req-config.json") + " --output " +
                          bare + " --seed 5");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto res =
      run({{{"id", "s"}, {"prompt_tokens", {5, 6}}, {"stop", "\n"}},
           {{"id", "ids"}, {"prompt_tokens", {5, 6}}, {"stop", {7}}, {"max_new_tokens", 3}}},
          "bare", 1, 1, bare);
  ASSERT_EQ(res.size(), 2u);
  EXPECT_EQ(res.at("\"s\"")["error"],
            "line 1: stop strings need a tokenizer, and this model has none: give token ids in "
            "\"stop\"");
  EXPECT_FALSE(res.at("\"ids\"").contains("error")) << res.at("\"ids\"").dump();
  EXPECT_FALSE(res.at("\"ids\"").contains("text"));
}

}  // namespace
}  // namespace tpinfer::test
