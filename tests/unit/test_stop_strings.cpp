// Stop strings: StopMatcher against a brute-force reference (decode every
// prefix, search all of its text), the engine's hook (it stops at the token that
// completes the string, keeps that token, cuts the text), the request forms and
// their errors, and the rank-to-rank wire.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../fake_step.hpp"
#include "base/error.hpp"
#include "engine/engine.hpp"
#include "job/jsonl.hpp"
#include "job/result_text.hpp"
#include "text/stop_matcher.hpp"
#include "text/tokenizer.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
constexpr size_t npos = std::string::npos;

const fs::path kData =
    fs::path(__FILE__).parent_path().parent_path().parent_path() / "tests" / "data" / "tokenizer";

// Byte-level, 557 ids: byte b's symbol has id b, 556 is <|endoftext|> (special).
const Tokenizer& gpt2() {
  static const Tokenizer tok = [] {
    std::ifstream f(kData / "tiny_gpt2.tokenizer.json", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return Tokenizer::from_json(ss.str());
  }();
  return tok;
}
constexpr int32_t kEndOfText = 556;

struct Expected {
  size_t tokens = npos;  // tokens fed when the first stop string appeared
  std::string text;      // the text before the earliest stop string then
};

// Decodes every prefix in full (as the result's "text" is made: special tokens
// and ids past the tokenizer left out) and searches all of it.
Expected reference_stop(const std::vector<int32_t>& ids, const std::vector<std::string>& stops) {
  std::vector<int32_t> known;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (static_cast<size_t>(ids[k]) < gpt2().vocab_size()) known.push_back(ids[k]);
    const std::string text = gpt2().decode(known, /*skip_special_tokens=*/true);
    size_t best = npos;
    for (const std::string& s : stops) best = std::min(best, text.find(s));
    if (best != npos) return {k + 1, text.substr(0, best)};
  }
  return {};
}

// Feeds tokens until the matcher reports a stop: how many it took (npos: none).
size_t feed(StopMatcher& m, const std::vector<int32_t>& ids) {
  for (size_t k = 0; k < ids.size(); ++k)
    if (m.push(ids[k])) return k + 1;
  return npos;
}

TEST(StopMatcher, MatchesAcrossTokensAndCutsBeforeTheStopString) {
  const std::vector<int32_t> ids = gpt2().encode("Hello world, what a day");
  StopMatcher m(gpt2(), {"o w"});
  const size_t took = feed(m, ids);
  ASSERT_NE(took, npos);
  EXPECT_EQ(m.text_before_stop(), "Hell");
  EXPECT_EQ(took, reference_stop(ids, {"o w"}).tokens);
  // The token that completed "o w" is the one whose text holds the "w".
  const std::string before =
      gpt2().decode(std::vector<int32_t>(ids.begin(), ids.begin() + took - 1));
  EXPECT_EQ(before.find('w'), npos) << before;
  // Once matched, it stays matched and later tokens change nothing.
  EXPECT_TRUE(m.push(ids.back()));
  EXPECT_EQ(m.text_before_stop(), "Hell");
}

TEST(StopMatcher, TheEarliestStopStringWins) {
  const std::vector<int32_t> ids = gpt2().encode("Hello world");
  // Both complete on the token that ends "world"; "o world" starts first.
  StopMatcher both(gpt2(), {"orld", "o world"});
  EXPECT_NE(feed(both, ids), npos);
  EXPECT_EQ(both.text_before_stop(), "Hell");
  // "lo w" completes first, so "world" never gets its chance.
  StopMatcher first(gpt2(), {"world", "lo w"});
  EXPECT_EQ(feed(first, ids), reference_stop(ids, {"lo w"}).tokens);
  EXPECT_EQ(first.text_before_stop(), "Hel");
  // No match: all the text, and no stop.
  StopMatcher none(gpt2(), {"xyz"});
  EXPECT_EQ(feed(none, ids), npos);
  EXPECT_FALSE(none.matched());
  EXPECT_EQ(none.text_before_stop(), "Hello world");
}

TEST(StopMatcher, NeverLooksAtHalfACharacter) {
  // "é" is C3 A9, fed as two byte tokens (ids 195, 169).
  StopMatcher e(gpt2(), {"\xC3\xA9"});
  EXPECT_FALSE(e.push('a'));
  EXPECT_FALSE(e.push(195));  // held: not a character yet
  EXPECT_TRUE(e.push(169));
  EXPECT_EQ(e.text_before_stop(), "a");
  // A whole decode of "a" + C3 ends in U+FFFD; the stream holds C3 instead, so a
  // stop string U+FFFD does not fire on a character that is still arriving.
  const std::string replacement = "\xEF\xBF\xBD";
  EXPECT_EQ(gpt2().decode(std::vector<int32_t>{'a', 195}), "a" + replacement);
  StopMatcher r(gpt2(), {replacement});
  EXPECT_FALSE(r.push('a'));
  EXPECT_FALSE(r.push(195));
  EXPECT_FALSE(r.push(169));
  // ...but a byte that can never complete a character is U+FFFD at once.
  EXPECT_FALSE(r.push(195));
  EXPECT_TRUE(r.push('x'));
  EXPECT_EQ(r.text_before_stop(), "a\xC3\xA9");
}

TEST(StopMatcher, SpecialTokensAndIdsPastTheTokenizerHaveNoText) {
  // "<|endoftext|>" is left out of the text as it is of the result's text, and
  // an id the model has but the tokenizer lacks (padded vocab) adds nothing.
  StopMatcher m(gpt2(), {"ab"});
  EXPECT_FALSE(m.push('a'));
  EXPECT_FALSE(m.push(kEndOfText));
  EXPECT_FALSE(m.push(570));
  EXPECT_TRUE(m.push('b'));
  EXPECT_EQ(m.text_before_stop(), "");
  StopMatcher special(gpt2(), {"<|endoftext|>"});
  EXPECT_FALSE(special.push(kEndOfText));
}

TEST(StopMatcher, AgreesWithTheReferenceOnRandomText) {
  const std::vector<std::string> words = {"the", " cat", " sat", "\n", "  ",  "é",   "日本",
                                          "👍",   "ab",   "aba",  ",",  " on", "mat", "e\xCC\x81"};
  std::mt19937 rng(11);
  int matched = 0, trials = 0;
  for (; trials < 400; ++trials) {
    std::string text;
    for (int w = 0, n = 1 + static_cast<int>(rng() % 12); w < n; ++w)
      text += words[rng() % words.size()];
    std::vector<int32_t> ids = gpt2().encode(text);
    // Raw bytes (possibly splitting or breaking characters), special and padded ids.
    for (int extra = static_cast<int>(rng() % 4); extra > 0; --extra) {
      const int32_t choices[] = {static_cast<int32_t>(rng() % 256), kEndOfText, 570};
      ids.insert(ids.begin() + static_cast<long>(rng() % (ids.size() + 1)), choices[rng() % 3]);
    }
    // Stop strings: pieces of the decoded text (whole characters, no U+FFFD,
    // which a whole decode and a stream place differently) and other words.
    std::vector<int32_t> known;
    for (int32_t id : ids)
      if (static_cast<size_t>(id) < gpt2().vocab_size()) known.push_back(id);
    const std::string full = gpt2().decode(known, true);
    std::vector<size_t> bounds;
    for (size_t i = 0; i <= full.size(); ++i)
      if (i == full.size() || (static_cast<unsigned char>(full[i]) & 0xC0) != 0x80)
        bounds.push_back(i);
    std::vector<std::string> stops;
    for (int s = 0, n = 1 + static_cast<int>(rng() % 3); s < n; ++s) {
      if (rng() % 4 == 0 || bounds.size() < 2) {
        stops.push_back(words[rng() % words.size()]);
        continue;
      }
      const size_t a = rng() % (bounds.size() - 1),
                   b = a + 1 + rng() % std::min<size_t>(4, bounds.size() - 1 - a);
      const std::string piece = full.substr(bounds[a], bounds[b] - bounds[a]);
      if (piece.find("\xEF\xBF\xBD") == npos) stops.push_back(piece);
    }
    if (stops.empty()) continue;
    StopMatcher m(gpt2(), stops);
    const size_t took = feed(m, ids);
    const Expected want = reference_stop(ids, stops);
    ASSERT_EQ(took, want.tokens) << "text " << full << " stop " << stops[0];
    if (took != npos) {
      EXPECT_EQ(m.text_before_stop(), want.text);
      ++matched;
    }
  }
  EXPECT_GT(matched, 150);
}

// ---- the engine --------------------------------------------------------------

constexpr int kPromptLen = 3;
constexpr int64_t kModelVocab = 600;  // past the tokenizer's 557, as padded checkpoints are

// A model that writes `script` whatever the prompt: the token at generated
// position i is script[i] (prompts all have kPromptLen tokens).
StepFn scripted(const std::vector<int32_t>& script) {
  return testing::step_from_logits([script](const BatchLayout& b, std::vector<float>& logits) {
    logits.assign(b.logit_rows.size() * kModelVocab, 0.0f);
    for (size_t r = 0; r < b.logit_rows.size(); ++r) {
      const int32_t pos = b.positions[b.logit_rows[r]];
      const size_t i = static_cast<size_t>(pos + 1 - kPromptLen) % script.size();
      logits[r * kModelVocab + script[i]] = 10.0f;
    }
  });
}

EngineOptions engine_options(int num_blocks = 256, bool with_tokenizer = true) {
  EngineOptions o;
  o.vocab_size = kModelVocab;
  o.max_context = 256;
  o.eos_token_ids = {kEndOfText};
  o.block_size = 2;
  o.num_blocks = num_blocks;
  o.max_running = 8;
  o.max_step_tokens = 16;
  if (with_tokenizer) o.tokenizer = std::make_shared<const Tokenizer>(gpt2());
  return o;
}

Request request(const std::string& id, int64_t max_new, std::vector<std::string> stops) {
  Request r;
  r.id_json = "\"" + id + "\"";
  r.prompt = {7, 8, 9};
  r.sampling.max_new_tokens = max_new;
  r.sampling.stop_strings = std::move(stops);
  return r;
}

// The result's "text", made as the result writer makes it.
std::string text_of(const Result& r) {
  return completion_text(gpt2(), r.choices.at(0));
}

std::map<std::string, Result> run(Engine& engine, const std::vector<Request>& reqs) {
  for (const Request& r : reqs) engine.add(r);
  std::map<std::string, Result> out;
  for (int guard = 0; engine.num_unfinished() > 0 && guard < 10000; ++guard)
    for (Result& r : engine.step()) out.emplace(r.id_json, std::move(r));
  return out;
}

TEST(StopStringsEngine, StopsAtTheCompletingTokenKeepsItAndCutsTheText) {
  const std::vector<int32_t> script = gpt2().encode("The cat sat on the mat. The end of it all");
  Engine engine(engine_options(), scripted(script));
  const Expected sat = reference_stop(script, {"sat on"});
  ASSERT_NE(sat.tokens, npos);
  const auto results =
      run(engine, {request("a", 40, {"sat on"}), request("b", 12, {}), request("c", 12, {"zebra"}),
                   request("d", static_cast<int64_t>(sat.tokens), {"sat on"}),
                   request("e", 40, {"mat", " the"})});
  ASSERT_EQ(results.size(), 5u);
  const Result& a = results.at("\"a\"");
  EXPECT_EQ(a.choices.at(0).finish_reason, "stop");
  EXPECT_EQ(a.choices.at(0).tokens,
            std::vector<int32_t>(script.begin(), script.begin() + sat.tokens));
  EXPECT_EQ(text_of(a), "The cat ");
  // Without stop strings, or when none matched: no cut (the text is the decode
  // of the tokens), the usual finish.
  for (const char* id : {"\"b\"", "\"c\""}) {
    EXPECT_EQ(results.at(id).choices.at(0).finish_reason, "length") << id;
    EXPECT_EQ(results.at(id).choices.at(0).tokens.size(), 12u) << id;
    EXPECT_EQ(results.at(id).choices.at(0).text_bytes, -1) << id;
  }
  // Completed on the last token max_new_tokens allows: a stop, not a length.
  EXPECT_EQ(results.at("\"d\"").choices.at(0).finish_reason, "stop");
  EXPECT_EQ(text_of(results.at("\"d\"")), "The cat ");
  // Two stop strings: the first to appear ends it.
  EXPECT_EQ(text_of(results.at("\"e\"")), "The cat sat on");
  EXPECT_EQ(results.at("\"e\"").choices.at(0).tokens.size(),
            reference_stop(script, {"mat", " the"}).tokens);
}

TEST(StopStringsEngine, SurvivesPreemption) {
  const std::vector<int32_t> script =
      gpt2().encode("one two three four five six seven eight nine ten eleven twelve");
  std::vector<Request> reqs;
  const std::vector<std::string> stops = {"five", "nine", "twelve", "eight n", "zebra"};
  for (size_t i = 0; i < stops.size(); ++i)
    reqs.push_back(request("r" + std::to_string(i), 60, {stops[i]}));
  Engine roomy(engine_options(256), scripted(script));
  const auto want = run(roomy, reqs);
  Engine tight(engine_options(34), scripted(script));
  const auto got = run(tight, reqs);
  EXPECT_GT(tight.stats().preemptions, 0);
  ASSERT_EQ(got.size(), reqs.size());
  for (const auto& [id, w] : want) {
    EXPECT_EQ(got.at(id).choices.at(0).tokens, w.choices.at(0).tokens) << id;
    EXPECT_EQ(text_of(got.at(id)), text_of(w)) << id;
    EXPECT_EQ(got.at(id).choices.at(0).finish_reason, w.choices.at(0).finish_reason) << id;
  }
  EXPECT_EQ(text_of(want.at("\"r0\"")), "one two three four ");
  EXPECT_EQ(want.at("\"r4\"").choices.at(0).finish_reason, "length");
}

TEST(StopStringsEngine, WithoutATokenizerTheRequestIsRefused) {
  Engine engine(engine_options(256, /*with_tokenizer=*/false), scripted({'a'}));
  try {
    engine.add(request("a", 4, {"x"}));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("stop strings need the model's tokenizer"), npos)
        << e.what();
  }
  EXPECT_EQ(engine.num_unfinished(), 0);
  Engine with_tok(engine_options(), scripted({'a'}));
  EXPECT_THROW(with_tok.add(request("e", 4, {""})), InputError);  // empty: would match at once
  const auto results = run(engine, {request("b", 4, {})});
  EXPECT_EQ(results.at("\"b\"").choices.at(0).tokens, (std::vector<int32_t>{'a', 'a', 'a', 'a'}));
}

// ---- the request line and the wire -------------------------------------------

RequestRules rules(bool has_tokenizer) {
  RequestRules r;
  r.vocab_size = 1000;
  r.max_context = 64;
  if (has_tokenizer) r.tokenizer = std::make_shared<const Tokenizer>(gpt2());
  r.defaults.stop_token_ids = {9};
  return r;
}

std::string error_of(const std::string& fields, bool has_tokenizer = true) {
  const ParsedLine p = parse_request_line(R"({"id":"q","prompt_tokens":[1],)" + fields + "}", 4,
                                          rules(has_tokenizer));
  return p.error ? p.error->error : "";
}

TEST(StopStringsRequest, FormsOfStop) {
  auto parse = [](const std::string& stop) {
    const ParsedLine p =
        parse_request_line(R"({"id":"q","prompt_tokens":[1],"stop":)" + stop + "}", 1, rules(true));
    EXPECT_TRUE(p.request) << (p.error ? p.error->error : "");
    return p.request ? p.request->sampling : SamplingParams{};
  };
  SamplingParams s = parse(R"("###")");
  EXPECT_EQ(s.stop_strings, std::vector<std::string>{"###"});
  EXPECT_TRUE(s.stop_token_ids.empty());  // "stop" replaces the defaults
  s = parse(R"([5, "\n\n", "Ende", 7])");
  EXPECT_EQ(s.stop_token_ids, (std::vector<int32_t>{5, 7}));
  EXPECT_EQ(s.stop_strings, (std::vector<std::string>{"\n\n", "Ende"}));
  s = parse("[]");
  EXPECT_TRUE(s.stop_token_ids.empty() && s.stop_strings.empty());
  const ParsedLine absent = parse_request_line(R"({"id":"q","prompt_tokens":[1]})", 1, rules(true));
  EXPECT_EQ(absent.request->sampling.stop_token_ids, std::vector<int32_t>{9});

  EXPECT_EQ(error_of(R"("stop":"")"), R"(line 4: "stop" is an empty string)");
  EXPECT_EQ(error_of(R"("stop":["a",""])"), R"(line 4: stop[1] is an empty string)");
  EXPECT_EQ(error_of(R"("stop":[true])"),
            R"(line 4: stop[0] must be a string or an integer token id, not a boolean)");
  EXPECT_EQ(
      error_of(R"("stop":{"s":1})"),
      R"(line 4: "stop" must be a string or an array of strings and token ids, not an object)");
  EXPECT_EQ(error_of(R"("stop":["a",1000])"),
            R"(line 4: stop[1] = 1000 is outside the vocabulary [0, 1000))");
  EXPECT_EQ(
      error_of(R"("stop":["a"])", /*has_tokenizer=*/false),
      R"(line 4: stop strings need a tokenizer, and this model has none: give token ids in "stop")");
}

TEST(StopStringsRequest, StopStringsAndCutTextCrossTheWire) {
  Request r = request("w", 5, {"\n\nUser:", "日本", "\"q\""});
  r.sampling.stop_token_ids = {3};
  const Request back = request_from_wire(request_to_wire(r));
  EXPECT_EQ(back.sampling.stop_strings, r.sampling.stop_strings);
  EXPECT_EQ(back.sampling.stop_token_ids, r.sampling.stop_token_ids);

  Result res;
  res.choices.resize(1);
  res.id_json = "\"w\"";
  res.choices.at(0).tokens = {1, 2};
  res.choices.at(0).finish_reason = "stop";
  res.choices.at(0).text_bytes = 7;
  const Result got = result_from_wire(result_to_wire(res));
  EXPECT_EQ(got.choices.at(0).text_bytes, 7);
  res.choices.at(0).text_bytes = -1;
  EXPECT_EQ(result_from_wire(result_to_wire(res)).choices.at(0).text_bytes, -1);
}

}  // namespace
}  // namespace tpinfer
